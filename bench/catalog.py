"""Benchmark the catalog: a synthetic catalog of a million episodes, queries and a mixture resolve.

    .venv/bin/python bench/catalog.py                       # 1M episodes, 400 datasets
    .venv/bin/python bench/catalog.py --episodes 200000 --meta-datasets 10 --meta-episodes 2000

1. `write`: a million catalog rows generated with numpy and written with polars straight to
   `catalog/episodes.parquet` (no ingest), as `catalog build` would leave them.
2. `build`: the real `catalog build` over synthetic meta folders (info.json, dataset_card.json,
   episodes.jsonl through the schemas): a full build, then an incremental one with nothing changed.
3. `query`: selections over the million rows through the lazy scan, first run and median of 5.
4. `resolve`: `mixtures/ei30k.yaml` against the million rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from catalog.index import build
from catalog.mixture import load_mixture, resolve
from catalog.query import Query, run_query
from schemas.canonical import dimension_names
from schemas.card import DatasetCard
from schemas.catalog import CATEGORIES, EPISODES_FILE, dataset_schema, episode_schema
from schemas.lerobot import EpisodeRecord, InfoJson

QUERIES = {
    "filter (category, tier, seconds)": 'category == "human_action" and quality_tier in ["high", "low"] '
    "and seconds > 2",
    "group by category, tier": ("seconds > 2", ["category", "quality_tier"]),
    "caption contains": 'contains(caption, "drawer") and has_action',
    "dimension valid": 'action_valid("left.keypoint") and category != "sim_robot"',
}
REPO = Path(__file__).resolve().parents[1]
CAPTIONS = ["pick up the cup", "open the drawer", "fold the towel", "pour water", "wipe the table"]


def synthetic_episodes(n: int, n_datasets: int, seed: int = 0) -> pl.DataFrame:
    """`n` catalog rows over `n_datasets` datasets; categories, tiers and lengths drawn at random."""
    rng = np.random.default_rng(seed)
    ds = np.sort(rng.integers(0, n_datasets, n))
    cat_of_ds = rng.integers(0, len(CATEGORIES), n_datasets)
    cats = np.array(CATEGORIES)[cat_of_ds[ds]]
    tier = np.where(cats == "human_actionless", "actionless", np.where(rng.random(n) < 0.7, "high", "low"))
    length = rng.integers(10, 9000, n)
    index = np.concatenate([np.arange(c) for c in np.bincount(ds, minlength=n_datasets)])
    full, right = "1" * 146, "0" * 73 + "1" * 73
    names = np.char.add("ds", ds.astype(str))
    df = pl.DataFrame(
        {
            "dataset": names,
            "episode_index": index,
            "source_episode_id": np.char.add("ep/", index.astype(str)),
            "source": np.char.add("src", (ds % 40).astype(str)),
            "embodiment": np.where(cats == "real_robot", "franka", "human_ego"),
            "category": cats,
            "quality_tier": tier,
            "tier_rule": np.where(tier == "low", "idle_ratio <= 0.5", "all_passed"),
            "tier_reason": "",
            "has_action": tier != "actionless",
            "length": length,
            "seconds": length / 10,
            "caption": np.array(CAPTIONS)[rng.integers(0, 5, n)],
            "caption_source": "source",
            "task": "task",
            "valid_state_dims": np.where(ds % 3 == 0, right, full),
            "valid_action_dims": np.where(ds % 3 == 0, right, full),
            "latents_present": rng.random(n) < 0.5,
            "path": np.char.add(names, "/data/chunk-000/episode.parquet"),
        }
    )
    return df.cast(episode_schema())  # type: ignore[arg-type]


def timed(fn: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """(first run, median of `repeat` further runs) in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def write_meta_dataset(ds: Path, episodes: int, category: str) -> None:
    """A dataset's meta folder only (what `catalog build` reads), through the schemas."""
    (ds / "meta").mkdir(parents=True)
    tier = "actionless" if category == "human_actionless" else "high"
    lines = [
        EpisodeRecord(
            source_episode_id=f"e/{i}",
            embodiment="franka",
            has_action=tier != "actionless",
            quality_tier=tier,
            caption=CAPTIONS[i % 5],
            caption_source="source",
            task_original=CAPTIONS[i % 5],
            episode_index=i,
            tasks=[CAPTIONS[i % 5]],
            length=50 + i % 100,
        ).model_dump_json()
        for i in range(episodes)
    ]
    (ds / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    frames = sum(50 + i % 100 for i in range(episodes))
    info = InfoJson(
        total_episodes=episodes,
        total_frames=frames,
        total_tasks=5,
        total_videos=0,
        total_chunks=1,
        fps=10,
        splits={"train": f"0:{episodes}"},
        features={},
    )
    (ds / "meta/info.json").write_text(info.model_dump_json())
    card = DatasetCard(
        source="bench",
        source_version="0",
        license="none",
        embodiment_kind=category,
        reference_frame="base",
        native_fps=10,
        fps=10,
        hours=frames / 36000,
        episodes=episodes,
        frames=frames,
        rejects=0,
        valid_state_dims=dimension_names(),
        valid_action_dims=dimension_names(),
        pipeline_version="0",
        pipeline_config_sha256="0",
    )
    (ds / "meta/dataset_card.json").write_text(card.model_dump_json())


def bench_build(tmp: Path, n_datasets: int, episodes: int) -> dict[str, float]:
    root = tmp / "meta-root"
    for d in range(n_datasets):
        write_meta_dataset(root / f"ds{d:03d}", episodes, CATEGORIES[d % len(CATEGORIES)])
    t0 = time.perf_counter()
    full = build(root)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = build(root)
    t_noop = time.perf_counter() - t0
    assert full.episodes == n_datasets * episodes and again.read == []
    return {"episodes": full.episodes, "full_s": t_full, "noop_s": t_noop}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1_000_000)
    p.add_argument("--datasets", type=int, default=400)
    p.add_argument("--meta-datasets", type=int, default=20)
    p.add_argument("--meta-episodes", type=int, default=5000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        root = tmp / "root"
        (root / "catalog").mkdir(parents=True)
        t0 = time.perf_counter()
        df = synthetic_episodes(args.episodes, args.datasets)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        df.write_parquet(root / EPISODES_FILE, statistics=True)
        t_write = time.perf_counter() - t0
        pl.DataFrame(schema=dataset_schema()).write_parquet(root / "catalog/datasets.parquet")
        size = (root / EPISODES_FILE).stat().st_size / 2**20
        print(
            f"write: {args.episodes} episodes, {args.datasets} datasets: generate {t_gen:.2f} s, "
            f"write_parquet {t_write:.2f} s, {size:.1f} MiB"
        )
        b = bench_build(tmp, args.meta_datasets, args.meta_episodes)
        print(
            f"build: {b['episodes']} episodes from meta files: full {b['full_s']:.2f} s "
            f"({b['episodes'] / b['full_s']:.0f} episodes/s), "
            f"incremental with nothing changed {b['noop_s'] * 1000:.1f} ms"
        )
        for label, spec in QUERIES.items():
            where, by = spec if isinstance(spec, tuple) else (spec, [])
            q = Query(where=where, group_by=by, columns=["dataset", "episode_index", "seconds"])
            rows = run_query(root, q).height
            first, median = timed(lambda q=q: run_query(root, q))
            print(f"query {label}: {rows} rows, first {first * 1000:.0f} ms, median {median * 1000:.0f} ms")
        mixture = load_mixture(REPO / "mixtures" / "ei30k.yaml")
        plan = resolve(root, mixture)
        first, median = timed(lambda: resolve(root, mixture), repeat=3)
        print(
            f"resolve ei30k: {plan.episodes} episodes, {plan.hours:.0f} hours, "
            f"first {first * 1000:.0f} ms, median {median * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
