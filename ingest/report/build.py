"""`ingest report PATH`: a static report of one dataset, opened as a file (no server, nothing from the
network): `index.html` (the card, counts, hours, tiers with their rules and reasons, captions, the episode
table with lazily loaded thumbnails, the rejects) and one page per episode (`episodes/`), images in `img/`.
Episodes are drawn in parallel worker processes; a thousand episodes make a page that opens in seconds."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingest.report.episode import EPISODE_DIR, IMG_DIR, StripOptions, episode_file, write_episode
from ingest.report.html import esc, key_values, page, table, tier_cell
from ingest.report.load import Dataset, load
from schemas.episode import FPS
from schemas.tiers import QualityConfig

PARALLEL_FROM = 24  # episodes; fewer are drawn in this process (starting workers costs more)
FILTER_JS = """
const box = document.getElementById('filter');
box.addEventListener('input', () => {
  const q = box.value.toLowerCase();
  let n = 0;
  for (const r of document.querySelectorAll('#episodes tbody tr')) {
    const show = r.textContent.toLowerCase().includes(q);
    r.style.display = show ? '' : 'none';
    n += show;
  }
  document.getElementById('shown').textContent = n;
});
"""


@dataclass
class ReportSummary:
    out: Path
    episodes: int
    seconds: float


def _counts(ds: Dataset) -> str:
    frames = sum(e.length for e in ds.episodes)
    return key_values({
        "episodes": len(ds.episodes), "frames": frames, "hours": f"{frames / FPS / 3600:.4f}",
        "rejects": len(ds.rejects), "cameras": ", ".join(ds.info.video_keys()) or "-",
        "robot type": ds.info.robot_type or "-",
    })  # fmt: skip


def _rules(quality: QualityConfig | None) -> str:
    if quality is None:
        return '<p class="muted">the rules of this card\'s section are not in the pipelines file given</p>'
    rows = [
        [esc(f"{r.metric} {r.op} {r.value:g}"), esc(r.why), esc(r.missing or quality.missing)]
        for r in quality.rules
    ]
    i = quality.interaction
    inter = (
        f"interaction filter: {i.mode}, idle below {i.idle_speed} m/s, cut spans from {i.min_span_s} s, "
        f"pauses tier low from {i.max_pause_s} s"
    )
    return table(["rule (must hold for high)", "why", "when missing"], rows) + f"<p>{esc(inter)}</p>"


def _tiers(ds: Dataset, quality: QualityConfig | None) -> str:
    tiers = Counter(e.quality_tier for e in ds.episodes)
    rules = Counter((e.quality_tier, e.tier_rule) for e in ds.episodes)
    rows = [[tier_cell(t), esc(r), f'<span class="num">{n}</span>'] for (t, r), n in sorted(rules.items())]
    head = ", ".join(f"{t} {n}" for t, n in sorted(tiers.items()))
    return f"<p>{esc(head)}</p>" + table(["tier", "decided by", "episodes"], rows) + _rules(quality)


def _episode_row(ds: Dataset, i: int, thumb: str) -> list[str]:
    e = ds.episodes[i]
    img = (
        f'<img class="thumb" loading="lazy" src="{IMG_DIR}/{esc(thumb)}" alt="episode {i}">' if thumb else "-"
    )
    link = f'<a href="{EPISODE_DIR}/{episode_file(i)}">{i}</a>'
    orig = (
        ""
        if e.task_original == e.caption
        else f'<br><span class="muted">original: {esc(e.task_original)}</span>'
    )
    m = e.quality_metrics
    cut = int(m.get("cut_frames_start", 0)) + int(m.get("cut_frames_end", 0))
    return [
        f'<a href="{EPISODE_DIR}/{episode_file(i)}">{img}</a>', link, esc(e.source_episode_id),
        f"{e.length / FPS:.1f}", tier_cell(e.quality_tier), esc(e.tier_reason),
        f"{esc(e.caption)} <span class=\"muted\">({esc(e.caption_source)})</span>{orig}", str(cut),
    ]  # fmt: skip


def index_html(ds: Dataset, thumbs: list[str], quality: QualityConfig | None) -> str:
    n = len(ds.episodes)
    rows = [_episode_row(ds, i, t) for i, t in enumerate(thumbs)]
    heads = ["frame", "episode", "source episode", "seconds", "tier", "reason", "caption", "cut frames"]
    rejects = table(
        ["source", "stage", "error"], [[esc(r.source_path), esc(r.stage), esc(r.error)] for r in ds.rejects]
    )
    card = key_values(ds.card.model_dump(exclude={"valid_state_dims", "valid_action_dims"}))
    body = (
        f'<h1>{esc(ds.name)}</h1><div class="row"><div><h2>Dataset card</h2>{card}</div>'
        f"<div><h2>Counts</h2>{_counts(ds)}</div><div><h2>Quality tiers</h2>{_tiers(ds, quality)}</div></div>"
        f'<h2>Episodes</h2><p><span id="episode-count" data-count="{n}">{n} episodes</span>; filter: '
        f'<input id="filter" placeholder="text, tier, source id"> (<span id="shown">{n}</span> shown)</p>'
        f"{table(heads, rows, attrs='id=episodes')}"
        f"<h2>Rejects ({len(ds.rejects)})</h2>{rejects if ds.rejects else '<p>none</p>'}"
    )
    return page(f"{ds.name}: report", body, FILTER_JS)


_WORKER: dict = {}


def _init(root: Path, out: Path, opts: StripOptions) -> None:
    """A worker process loads the dataset once."""
    _WORKER.update(ds=load(root), out=out, opts=opts)


def _one(i: int) -> str:
    ds = _WORKER["ds"]
    return write_episode(ds, ds.episodes[i], _WORKER["out"], _WORKER["opts"])


def _draw_all(root: Path, out: Path, opts: StripOptions, n: int, workers: int) -> list[str]:
    """Every episode's page and images; its thumbnail's name in episode order."""
    if workers <= 1 or n <= 1:
        _init(root, out, opts)
        return [_one(i) for i in range(n)]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold Ray's or torch's threads
    with ProcessPoolExecutor(
        min(workers, n), mp_context=ctx, initializer=_init, initargs=(root, out, opts)
    ) as pool:
        return list(pool.map(_one, range(n), chunksize=max(1, min(16, n // (4 * workers)))))


def write_report(
    root: Path, out: Path, quality: QualityConfig | None, opts: StripOptions, workers: int = 0
) -> ReportSummary:
    """Write the report of the dataset `root` into `out` (created; its pages and images are replaced)."""
    t0 = time.perf_counter()
    ds = load(root)
    for sub in ("", IMG_DIR, EPISODE_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = len(ds.episodes)
    workers = workers or (min(os.cpu_count() or 1, 8) if n >= PARALLEL_FROM else 1)
    thumbs = _draw_all(root, out, opts, n, workers)
    (out / "index.html").write_text(index_html(ds, thumbs, quality))
    return ReportSummary(out=out, episodes=len(ds.episodes), seconds=time.perf_counter() - t0)
