"""`ingest hands PATH --estimator mediapipe`: give the episodes of a published action-free dataset estimated
hands, in place (docs/HANDS.md).

For every episode without actions (and not yet upgraded): decode its published video (row k = video frame
k, 10 Hz), run the estimator over the frames in order, lift the detections to the contract (`lift.py`:
intrinsics of `meta/cameras.jsonl` when the episode has them, else the section's `hands.horizontal_fov_deg`;
its per-frame camera poses when it has them) and rewrite the episode's Parquet atomically with the new
state / action / masks, their statistics, `has_action: true`, `hands_source: estimated`, the hand metrics in
`quality_metrics` and the tier (the section's rules, capped at `hands.max_tier`, `low` by default). Then
`meta/` is rebuilt. Each file is rewritten at once or not at all, so a killed run resumes where it
stopped and ends with what an uninterrupted run writes; a second run changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from ingest import writer
from ingest.convert.camera import poses_from_rows
from ingest.errors import EpisodeError
from ingest.hands.backend import FrameEstimate, HandEstimator, open_estimator
from ingest.hands.lift import camera_from_rotations, default_intrinsics, lift
from ingest.stages import tiers
from schemas.card import DatasetCard
from schemas.hands import HandsConfig
from schemas.lerobot import CARD_PATH, data_path, video_path
from schemas.pipelines import PipelinesFile
from schemas.reject import RejectRecord
from schemas.tiers import QualityConfig

ESTIMATED_RULE = "estimated_hands"
Outcome = tuple[writer.PublishedEpisode, RejectRecord | None]


def camera_motion(
    results: list[FrameEstimate], poses: np.ndarray | None, cfg: HandsConfig
) -> tuple[np.ndarray | None, dict[str, float]]:
    """The camera poses the actions are decoupled with, and what is known of them: the source's poses
    (everything), else the estimated rotations (translation unknown), else nothing (head motion stays in
    the actions, docs/HANDS.md)."""
    if poses is not None:
        return poses, {"camera_rotation_known": 1.0, "camera_translation_known": 1.0}
    if not cfg.camera_rotation:
        return None, {"camera_rotation_known": 0.0, "camera_translation_known": 0.0}
    poses, known = camera_from_rotations([r.camera_rotation for r in results])
    return poses, {"camera_rotation_known": known, "camera_translation_known": 0.0}


class HandsOptions(BaseModel):
    """What `ingest hands` accepts."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    pipelines: Path
    estimator: str = "mediapipe"
    workers: int | None = Field(1, ge=1)  # estimator processes: 1 in this process, else (None: the CPUs) Ray
    address: str | None = None  # a Ray cluster to join


class HandsSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_root: Path
    upgraded: int
    skipped: int  # already upgraded, or hands from the source
    failed: int  # unreadable videos: `meta/rejects.jsonl` (stage `hands`); the episode stays action-free


def estimate_video(path: Path, length: int, est: HandEstimator, K: np.ndarray | None) -> list[FrameEstimate]:
    """The estimator over every frame of a published video, decoded one at a time (memory stays flat);
    EpisodeError when it cannot be decoded or has not `length` frames."""
    est.reset(K)
    results = []
    try:
        with av.open(str(path)) as c:
            for frame in c.decode(video=0):
                results.append(est.estimate(frame.to_ndarray(format="rgb24")))
    except (OSError, av.error.FFmpegError) as e:
        raise EpisodeError(path, "video", f"cannot decode: {e}", stage="hands") from e
    if len(results) != length:
        raise EpisodeError(path, "video", f"{len(results)} frames for an episode of {length}", stage="hands")
    return results


def camera_of(
    ep: writer.PublishedEpisode, key: str, size: tuple[int, int], cfg: HandsConfig, table: pa.Table
) -> tuple[np.ndarray, np.ndarray | None]:
    """(K at the published size, camera poses `[T, 4, 4]` or None) of the episode's camera `key`."""
    cam = next((c for c in ep.cameras if c.camera == key), None)
    if cam is None:
        return default_intrinsics(size[0], size[1], cfg.horizontal_fov_deg), None
    K = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1.0]])
    poses = None
    if cam.pose_column and cam.pose_column in table.column_names:
        poses = poses_from_rows(np.asarray(table[cam.pose_column].to_pylist(), dtype=np.float64))
    return K, poses


def decide_tier(metrics: dict[str, float], quality: QualityConfig, cfg: HandsConfig) -> tiers.TierDecision:
    """The section's rules on the new metrics, then at most `cfg.max_tier`."""
    decision = tiers.decide(metrics, True, quality)
    if decision.tier == "high" and cfg.max_tier == "low":
        why = "hands estimated from video: dynamics and forecasting, not the policy (hands.max_tier: low)"
        return tiers.TierDecision(tier="low", rule=ESTIMATED_RULE, reason=why)
    return decision


def upgrade_episode(root: Path, ep: writer.PublishedEpisode, est: HandEstimator, key: str, cfg: HandsConfig,
                    quality: QualityConfig) -> None:  # fmt: skip
    """Estimate, lift and rewrite one published episode (atomic)."""
    path = root / data_path(ep.record.episode_index)
    table = pq.read_table(path)
    mp4 = root / video_path(ep.record.episode_index, key)
    if key not in ep.videos:
        raise EpisodeError(path, key, "the episode has no video of this camera", stage="hands")
    width, height = ep.videos[key].width, ep.videos[key].height
    K, poses = camera_of(ep, key, (width, height), cfg, table)
    results = estimate_video(mp4, ep.record.length, est, K if cfg.camera_rotation else None)
    poses, camera = camera_motion(results, poses, cfg)
    arrays, _, metrics = lift([r.hands for r in results], K, width, cfg, poses)
    columns = {"observation.state": arrays.state, "action": arrays.action,
               "observation.state_mask": arrays.state_mask, "action_mask": arrays.action_mask}  # fmt: skip
    stats = {**ep.stats, **writer.vector_stats(columns)}
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, writer.fixed_list(values))
    metrics = {**ep.record.quality_metrics, **metrics, **camera}
    update = {"has_action": True, "hands_source": "estimated", "quality_metrics": metrics}
    record = decide_tier(metrics, quality, cfg).apply(ep.record.model_copy(update=update))
    valid = {"valid_state_dims": arrays.state_mask.any(0).tolist(),
             "valid_action_dims": arrays.action_mask.any(0).tolist()}  # fmt: skip
    new = ep.model_copy(update={"record": record, "stats": stats, **valid})
    writer.rewrite_episode(root, table, new)


def hands_config(pipelines: Path, source: str) -> tuple[str, HandsConfig, QualityConfig]:
    """(video key, hands block, tier rules) of the card's section; ValueError when it has no `hands:`."""
    cfg = PipelinesFile.load(pipelines).source(source)
    hands_cfg = getattr(cfg, "hands", None)
    if not isinstance(hands_cfg, HandsConfig):
        raise ValueError(f"section {source!r} has no `hands:` block (action-free video sections do)")
    return cfg.camera_key, hands_cfg, cfg.quality  # type: ignore[attr-defined]


class Upgrader:
    """One estimator process and what upgrading an episode needs; also the Ray actor of the pool (it is
    given JSON, never pickled user data). `__call__` upgrades one episode and returns its error or ''."""

    def __init__(self, root: str, pipelines: str, source: str, estimator: str) -> None:
        self.root = Path(root)
        self.key, self.cfg, self.quality = hands_config(Path(pipelines), source)
        self.est = open_estimator(estimator, self.cfg)

    def upgrade(self, ep: writer.PublishedEpisode) -> RejectRecord | None:
        try:
            upgrade_episode(self.root, ep, self.est, self.key, self.cfg, self.quality)
        except EpisodeError as e:  # the episode stays published without hands
            return RejectRecord(source_path=e.path, stage="hands", error=str(e))
        return None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        eps = [writer.PublishedEpisode.model_validate_json(x) for x in batch["episode"]]
        rejects = [self.upgrade(ep) for ep in eps]
        lines = [r.model_dump_json() if r else "" for r in rejects]
        return {"episode": batch["episode"], "reject": np.array(lines)}

    def close(self) -> None:
        self.est.close()


def _upgrade_local(todo: list[writer.PublishedEpisode], opts: HandsOptions, source: str) -> Iterator[Outcome]:
    up = Upgrader(str(opts.path), str(opts.pipelines), source, opts.estimator)
    try:
        for ep in todo:
            yield ep, up.upgrade(ep)
    finally:
        up.close()


def _upgrade_ray(todo: list[writer.PublishedEpisode], opts: HandsOptions, source: str) -> Iterator[Outcome]:
    """A pool of `opts.workers` actors, each with its own estimator process; an episode per call."""
    import ray

    from ingest.cluster import init_ray, quiet_data_context, shutdown_ray

    started, workers = init_ray(opts.address, opts.workers)
    try:
        quiet_data_context(preserve_order=False)
        items = [{"episode": ep.model_dump_json()} for ep in todo]
        args = {"root": str(opts.path), "pipelines": str(opts.pipelines), "source": source,
                "estimator": opts.estimator}  # fmt: skip
        pool = ray.data.ActorPoolStrategy(size=min(workers, len(todo)))
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(Upgrader, batch_size=1, num_cpus=1, compute=pool, fn_constructor_kwargs=args)
        for row in ds.iter_rows():
            reject = RejectRecord.model_validate_json(row["reject"]) if row["reject"] else None
            yield writer.PublishedEpisode.model_validate_json(row["episode"]), reject
    finally:
        shutdown_ray(started)


def run_hands(opts: HandsOptions) -> HandsSummary:
    """`ingest hands`: upgrade every action-free episode of the dataset at `opts.path`, then `meta/`."""
    from ingest.workdir import clear_reject, dataset_lock, load_rejects, save_reject

    root = opts.path
    card = DatasetCard.model_validate_json((root / CARD_PATH).read_text())
    hands_config(opts.pipelines, card.source)  # refuses a section without `hands:` before anything runs
    section = PipelinesFile.load(opts.pipelines).source(card.source)
    failed = 0
    with dataset_lock(root):
        published = writer.read_published(root)
        todo = [ep for ep in published if not ep.record.has_action]
        run = _upgrade_local if opts.workers == 1 and opts.address is None else _upgrade_ray
        for ep, reject in run(todo, opts, card.source) if todo else ():
            reject_key = f"hands:{ep.record.source_episode_id}"
            if reject is None:
                clear_reject(root, reject_key)
            else:
                print(f"ingest hands: {reject.error}", file=sys.stderr)
                save_reject(root, reject, reject_key)
                failed += 1
        writer.finalize_meta(root, card.source, section, load_rejects(root))
    skipped = len(published) - len(todo)
    return HandsSummary(dataset_root=root, upgraded=len(todo) - failed, skipped=skipped, failed=failed)
