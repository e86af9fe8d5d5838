"""The few HTML pieces the report pages are made of: a page, a table, a key-value table. Every text that comes
from data goes through `escape`; pages load nothing from the network."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;vertical-align:top}
th{background:#f3f3f3;text-align:left}.num{text-align:right}
.tier-high{color:#1a7f37;font-weight:600}.tier-low{color:#b35900;font-weight:600}.tier-actionless{color:#666}
.strip{display:flex;gap:4px;flex-wrap:wrap}.strip figure{margin:0}
.strip figcaption{font-size:.75em;color:#555}.row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
.curves{display:flex;gap:6px;flex-wrap:wrap}.note{color:#a00;font-size:.85em}.muted{color:#777}
img.thumb{width:160px;height:auto;display:block}.nav a{margin-right:1em}
.legend span{display:inline-block;margin-right:1em}
"""


def esc(value: object) -> str:
    return escape(str(value))


def page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}{js}</body></html>\n"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "") -> str:
    """Cells are HTML already (escape what comes from data with `esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(items: dict[str, object]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def tier_cell(tier: str) -> str:
    return f'<span class="tier-{esc(tier)}">{esc(tier)}</span>'


def number(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
