"""One episode's page of the report (`episodes/episode_XXXXXX.html`) and its images (`img/`): metadata,
quality metrics, what the interaction filter cut, a filmstrip per camera with the hands drawn, state and
action curves. Runs in a worker process and returns the name of the index row's thumbnail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ingest.report import curves, filmstrip
from ingest.report.html import esc, key_values, number, page, table, tier_cell
from ingest.report.load import Dataset, episode_columns
from schemas.camera import CameraRecord
from schemas.episode import FPS
from schemas.lerobot import EpisodeRecord

IMG_DIR, EPISODE_DIR = "img", "episodes"
THUMB_WIDTH = 160
MAX_CAMERAS = 4
NO_VIDEO = '<p class="muted">this dataset has no video</p>'
LEGEND = (
    '<p class="legend"><span style="color:#ff8c00">&#9679; left hand</span>'
    '<span style="color:#00c8ff">&#9679; right hand</span><span style="color:#e62828">x</span>'
    '<span style="color:#28c828">y</span><span style="color:#285aff">z (approach)</span>'
    '<span style="color:#969696">&#9675; masked (kept, not trained on)</span></p>'
)


@dataclass
class StripOptions:
    frames: int = 6
    width: int = 320


def episode_file(i: int) -> str:
    return f"episode_{i:06d}.html"


def thumb_file(i: int) -> str:
    return f"thumb_{i:06d}.jpg"


def _strips(
    ds: Dataset, rec: EpisodeRecord, cols: dict, out: Path, opts: StripOptions
) -> list[filmstrip.Strip]:
    cams: list[CameraRecord] = ds.cameras.get(rec.episode_index, [])
    by_key, i, frame = {c.camera: c for c in cams}, rec.episode_index, ds.card.reference_frame
    strips = []
    for key in ds.info.video_keys()[:MAX_CAMERAS]:
        inp = filmstrip.StripInput(ds.video(i, key), key, by_key.get(key), cams, frame)
        prefix = f"ep{i:06d}_{key.removeprefix('observation.images.')}"
        strips.append(filmstrip.strip(inp, cols, out / IMG_DIR, prefix, opts.frames, opts.width))
    return strips


def _strip_html(s: filmstrip.Strip) -> str:
    figs = "".join(
        f'<figure><img loading="lazy" src="../{IMG_DIR}/{esc(f)}" width="{s.width}" alt="frame {k}">'
        f"<figcaption>frame {k} ({k / FPS:.1f} s)</figcaption></figure>"
        for f, k in zip(s.files, s.frames, strict=True)
    )
    note = f'<p class="note">{esc(s.note)}</p>' if s.note else ""
    return f'<h3>{esc(s.camera)}</h3>{note}<div class="strip">{figs}</div>'


def interaction_svg(rec: EpisodeRecord) -> str:
    """A bar of the recording: what the interaction filter cut (grey) around the published frames (green),
    and the idle spans still in them (light)."""
    m = rec.quality_metrics
    start, end = int(m.get("cut_frames_start", 0)), int(m.get("cut_frames_end", 0))
    total = start + rec.length + end
    x = [0.0, start / total, (start + rec.length) / total, 1.0]
    w = 600
    idle0, idle1 = m.get("idle_start_s", 0.0) * FPS / total, m.get("idle_end_s", 0.0) * FPS / total
    bars = [
        (x[0], x[1], "#bbb", "cut"),
        (x[1], x[2], "#4c9", "published"),
        (x[1], x[1] + idle0, "#cec", "idle"),
        (x[2] - idle1, x[2], "#cec", "idle"),
        (x[2], x[3], "#bbb", "cut"),
    ]
    rects = "".join(
        f'<rect x="{a * w:.1f}" y="4" width="{(b - a) * w:.1f}" height="16" fill="{c}">'
        f"<title>{t}</title></rect>"
        for a, b, c, t in bars
        if b > a
    )
    return f'<svg width="{w}" height="24" role="img">{rects}</svg>'


def _interaction(rec: EpisodeRecord) -> str:
    m = rec.quality_metrics
    keys = ("cut_frames_start", "cut_frames_end", "idle_start_s", "idle_end_s", "longest_pause_s")
    keys += ("active_steps",)
    got = {k: number(m[k]) for k in keys if k in m}
    if not got:
        return '<p class="muted">no interaction metrics (the filter is off for this category)</p>'
    cut = int(m.get("cut_frames_start", 0)) + int(m.get("cut_frames_end", 0))
    what = f"cut {cut} frames ({cut / FPS:.1f} s) of idle ends" if cut else "cut nothing"
    return f"<p>The interaction filter {what}.</p>{interaction_svg(rec)}{key_values(got)}"


def _meta(rec: EpisodeRecord) -> str:
    return key_values({
        "source episode": rec.source_episode_id, "embodiment": rec.embodiment, "frames": rec.length,
        "seconds": f"{rec.length / FPS:.1f}", "has action": rec.has_action, "caption": rec.caption,
        "caption source": rec.caption_source, "original text": rec.task_original,
        "hands": rec.hands_source or "from the source",
    })  # fmt: skip


def _nav(i: int, n: int) -> str:
    nav = '<p class="nav"><a href="../index.html">index</a>'
    nav += f'<a href="{episode_file(i - 1)}">previous</a>' if i > 0 else ""
    return nav + (f'<a href="{episode_file(i + 1)}">next</a>' if i + 1 < n else "") + "</p>"


def _facts(rec: EpisodeRecord) -> str:
    """Metadata and tier, quality metrics, interaction filter: side by side."""
    metrics = [[esc(k), number(v)] for k, v in sorted(rec.quality_metrics.items())]
    tier = (
        f"<h2>Tier</h2><p>{tier_cell(rec.quality_tier)} by <code>{esc(rec.tier_rule)}</code>: "
        f"{esc(rec.tier_reason)}</p>"
    )
    return (
        f'<div class="row"><div>{_meta(rec)}{tier}</div>'
        f"<div><h2>Quality metrics</h2>{table(['metric', 'value'], metrics)}</div>"
        f"<div><h2>Interaction filter</h2>{_interaction(rec)}</div></div>"
    )


def body(ds: Dataset, rec: EpisodeRecord, strips: list[filmstrip.Strip], panels: dict[str, list[str]]) -> str:
    curve_html = "".join(
        f'<h3>{esc(k)}</h3><div class="curves">{"".join(v)}</div>' for k, v in panels.items()
    )
    return (
        f"{_nav(rec.episode_index, len(ds.episodes))}<h1>{esc(ds.name)}: episode {rec.episode_index}</h1>"
        f"{_facts(rec)}<h2>Frames</h2>{LEGEND}{''.join(_strip_html(s) for s in strips) or NO_VIDEO}"
        f"<h2>State and action</h2>{curve_html or '<p class=muted>no valid state or action</p>'}"
    )


def _thumbnail(out: Path, strips: list[filmstrip.Strip], i: int) -> str:
    if not strips or not strips[0].files:
        return ""
    files = strips[0].files
    with Image.open(out / IMG_DIR / files[len(files) // 2]) as img:
        img.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
        img.save(out / IMG_DIR / thumb_file(i), quality=filmstrip.JPEG_QUALITY)
    return thumb_file(i)


def write_episode(ds: Dataset, rec: EpisodeRecord, out: Path, opts: StripOptions) -> str:
    """Write the episode's images and page under `out`; returns its thumbnail's name (or "" without video)."""
    cols = episode_columns(ds.root, rec.episode_index)
    strips = _strips(ds, rec, cols, out, opts)
    html = page(f"{ds.name} episode {rec.episode_index}", body(ds, rec, strips, curves.episode_panels(cols)))
    (out / EPISODE_DIR / episode_file(rec.episode_index)).write_text(html)
    return _thumbnail(out, strips, rec.episode_index)
