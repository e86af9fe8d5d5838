"""`ingest caption PATH`: re-caption a published dataset with one captioner, then rebuild its meta.

    template / cached:  every episode on the driver (text only, instant)
    vlm:                decode (CPU tasks)  ->  Qwen3-VL (actor pool; a GPU per  ->  driver: appends each
                        a few frames of         actor when the cluster has GPUs),    result to the work file
                        each episode            batched greedy generation

Then every episode gets its new `caption` / `caption_source` through `writer.rewrite_episode_meta` (which
renumbers `tasks.jsonl` rows in `task_index` and `annotation.*`, rewriting only the files that change)
and `writer.finalize_meta`. `task_original` is never touched. The VLM's results are appended as they come
to `.work/captions/vlm-<setup>.jsonl` (setup = model, prompt and frame settings), so a killed or repeated
run generates only what is missing; a second run of any captioner changes no file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest import writer
from ingest.captions.base import CaptionRequest, kept
from ingest.captions.cached import CachedCaptioner
from ingest.captions.template import TemplateCaptioner
from ingest.cluster import init_ray, progress, quiet_data_context, shutdown_ray
from schemas.captions import VLM_WORK_DIR, CaptionResult, CaptionsConfig, VlmConfig, VlmWorkRow
from schemas.card import DatasetCard
from schemas.episode import EpisodeMeta
from schemas.lerobot import CARD_PATH, video_path
from schemas.pipelines import PipelinesFile

DEFAULT_PIPELINES = Path(__file__).resolve().parents[2] / "pipelines.yaml"


class CaptionOptions(BaseModel):
    """What `ingest caption` (and `ingest run --captioner`) accepts."""

    model_config = ConfigDict(extra="forbid")
    dataset: Path
    captions: CaptionsConfig = CaptionsConfig()
    pipelines: Path = DEFAULT_PIPELINES
    address: str | None = None
    workers: int | None = Field(None, gt=0, description="decode tasks at once (default: CPUs)")
    captioners: int | None = Field(None, gt=0, description="VLM actors (default: GPUs, or 1 on CPU)")
    progress: bool = True


class CaptionSummary(BaseModel):
    dataset: Path
    captioner: str
    episodes: int
    captioned: int  # episodes whose caption now comes from this captioner
    reused: int = 0  # VLM results taken from the work file of an earlier run
    fallbacks: int = 0  # VLM: empty answer or undecodable video -> template caption
    kept: list[str] = []  # episodes the captioner had nothing for (cached: not in the file)
    errors: list[str] = []  # VLM: videos that could not be decoded
    files_changed: int


class VlmJob(BaseModel):
    """One episode for the VLM: where its frames are and what the source said."""

    source_episode_id: str
    task_original: str
    caption: str
    caption_source: str
    video: str | None
    frames: list[int]


# ----------------------------------------------------------------------------- requests (driver)


def _request(ep: writer.PublishedEpisode, frames: np.ndarray | None = None) -> CaptionRequest:
    r = ep.record
    return CaptionRequest(source_episode_id=r.source_episode_id, task_original=r.task_original,
                          caption=r.caption, caption_source=r.caption_source, frames=frames)  # fmt: skip


def _vlm_job(root: Path, ep: writer.PublishedEpisode, cfg: VlmConfig) -> VlmJob:
    from ingest.captions.vlm import frame_positions

    camera = cfg.camera or next(iter(ep.videos), None)
    if camera is not None and camera not in ep.videos:
        raise ValueError(
            f"episode {ep.record.episode_index} has no camera {camera!r}; it has {list(ep.videos)}"
        )
    video = str(root / video_path(ep.record.episode_index, camera)) if camera else None
    frames = frame_positions(ep.record.length, cfg.frames).tolist() if camera else []
    r = ep.record
    return VlmJob(source_episode_id=r.source_episode_id, task_original=r.task_original, caption=r.caption,
                  caption_source=r.caption_source, video=video, frames=frames)  # fmt: skip


def _job_request(job: VlmJob, frames: np.ndarray | None) -> CaptionRequest:
    return CaptionRequest(source_episode_id=job.source_episode_id, task_original=job.task_original,
                          caption=job.caption, caption_source=job.caption_source, frames=frames)  # fmt: skip


# ----------------------------------------------------------------------------- VLM work file


def setup_key(cfg: VlmConfig) -> str:
    """What a VLM result depends on besides the episode: model, prompt, frames, image size, length."""
    from ingest.captions.vlm import PROMPT_VERSION, model_name

    assert cfg.model_dir is not None
    config = hashlib.sha256((cfg.model_dir / "config.json").read_bytes()).hexdigest()
    setup = {"model": model_name(cfg.model_dir), "config": config, "prompt": PROMPT_VERSION,
             "frames": cfg.frames, "image_size": cfg.image_size, "max_new_tokens": cfg.max_new_tokens,
             "camera": cfg.camera}  # fmt: skip
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:16]


def work_file(root: Path, cfg: VlmConfig) -> Path:
    return root / VLM_WORK_DIR / f"vlm-{setup_key(cfg)}.jsonl"


def load_work(path: Path) -> dict[str, VlmWorkRow]:
    """Results of earlier runs; a torn last line (a killed run) is skipped."""
    rows: dict[str, VlmWorkRow] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = VlmWorkRow.model_validate_json(line)
            except ValidationError:
                continue
            rows[row.source_episode_id] = row
    return rows


# ----------------------------------------------------------------------------- Ray stages (VLM)


def _decode_row(row: dict[str, Any], long_side: int) -> dict[str, Any]:
    """CPU stage: one VlmJob in, its frames out (or the error)."""
    from ingest.captions.vlm import decode_frames
    from ingest.errors import EpisodeError

    job = VlmJob.model_validate_json(row["job"])
    empty = np.zeros((0, 1, 1, 3), np.uint8)
    if job.video is None:
        return {"job": row["job"], "frames": empty, "error": ""}
    try:
        frames = decode_frames(Path(job.video), np.asarray(job.frames, dtype=np.int64), long_side)
    except EpisodeError as e:
        return {"job": row["job"], "frames": empty, "error": str(e)}
    return {"job": row["job"], "frames": frames, "error": ""}


class CaptionActor:
    """GPU (or CPU) stage: one Qwen3-VL per actor, loaded once; a batch of episodes per call."""

    def __init__(self, cfg_json: str, device: str, cpu_threads: int) -> None:
        import torch

        from ingest.captions.vlm import VlmCaptioner

        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        self.captioner = VlmCaptioner(VlmConfig.model_validate_json(cfg_json), device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [VlmJob.model_validate_json(j) for j in batch["job"]]
        ok = [i for i, err in enumerate(batch["error"]) if not err]
        reqs = [_job_request(jobs[i], _frames_or_none(batch["frames"][i])) for i in ok]
        results = dict(zip(ok, self.captioner.caption(reqs), strict=True)) if reqs else {}
        out = [results[i].model_dump_json() if i in results else "" for i in range(len(jobs))]
        return {"job": batch["job"], "result": np.array(out, dtype=object), "error": batch["error"]}


def _frames_or_none(frames: np.ndarray) -> np.ndarray | None:
    frames = np.asarray(frames)
    return frames if frames.ndim == 4 and len(frames) else None


def _pool(opts: CaptionOptions, workers: int) -> tuple[int, float, str, int]:
    """(actors, GPUs per actor, torch device, torch CPU threads per actor)."""
    import ray

    cfg = opts.captions.vlm
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and cfg.device != "cpu":
        return opts.captioners or gpus, 1.0, "cuda", 0
    n = opts.captioners or 1
    return n, 0.0, "cuda" if cfg.device == "cuda" else "cpu", max(1, workers // n)


def _vlm_stream(todo: list[VlmJob], opts: CaptionOptions, workers: int) -> Iterator[dict[str, Any]]:
    import ray

    quiet_data_context(preserve_order=False)
    cfg = opts.captions.vlm
    n_actors, gpus, device, threads = _pool(opts, workers)
    ds = ray.data.from_items([{"job": j.model_dump_json()} for j in todo], override_num_blocks=len(todo))
    ds = ds.map(_decode_row, fn_kwargs={"long_side": cfg.image_size}, num_cpus=1,
                compute=ray.data.TaskPoolStrategy(size=workers))  # fmt: skip
    ds = ds.map_batches(
        CaptionActor,
        fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "device": device, "cpu_threads": threads},
        batch_size=cfg.batch_size,
        num_gpus=gpus,
        num_cpus=0 if gpus else 1,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
    )
    yield from ds.iter_rows()


class VlmOutcome(BaseModel):
    results: dict[str, CaptionResult]
    reused: int
    errors: list[str]


def _generate(todo: list[VlmJob], opts: CaptionOptions, path: Path, outcome: VlmOutcome) -> None:
    """Stream the VLM over `todo`, appending each result to the work file as it comes."""
    from ingest.captions.vlm import model_name

    cfg = opts.captions.vlm
    path.parent.mkdir(parents=True, exist_ok=True)
    started, workers = init_ray(opts.address, opts.workers)
    try:
        with progress(opts.progress) as bar, open(path, "a") as out:
            task = bar.add_task(f"caption {model_name(cfg.model_dir)}", total=len(todo), rejects=0)
            for row in _vlm_stream(todo, opts, workers):
                job = VlmJob.model_validate_json(row["job"])
                if row["error"]:
                    outcome.errors.append(str(row["error"]))
                    outcome.results[job.source_episode_id] = kept(_job_request(job, None))
                else:
                    result = CaptionResult.model_validate_json(row["result"])
                    work = VlmWorkRow(**result.model_dump(), task_original=job.task_original)
                    out.write(work.model_dump_json() + "\n")
                    out.flush()
                    outcome.results[job.source_episode_id] = result
                bar.update(task, advance=1, rejects=len(outcome.errors))
    finally:
        shutdown_ray(started)


def run_vlm(root: Path, published: list[writer.PublishedEpisode], opts: CaptionOptions) -> VlmOutcome:
    """VLM captions of every episode: from the work file when already made with this setup, else generated."""
    from ingest.captions.vlm import NO_MODEL_MESSAGE

    cfg = opts.captions.vlm
    if cfg.model_dir is None:
        raise ValueError(NO_MODEL_MESSAGE)
    path = work_file(root, cfg)
    done = load_work(path)
    jobs = [_vlm_job(root, ep, cfg) for ep in published]
    fresh = {j.source_episode_id for j in jobs if j.source_episode_id in done
             and done[j.source_episode_id].task_original == j.task_original}  # fmt: skip
    results: dict[str, CaptionResult] = {i: done[i] for i in fresh}
    outcome = VlmOutcome(results=results, reused=len(fresh), errors=[])
    todo = [j for j in jobs if j.source_episode_id not in fresh]
    if todo:
        _generate(todo, opts, path, outcome)
    return outcome


# ----------------------------------------------------------------------------- apply (driver)


def apply_captions(root: Path, results: dict[str, CaptionResult], pipelines: Path) -> int:
    """Write the captions into the published episodes and rebuild meta; returns files changed."""
    from ingest.workdir import dataset_lock, load_rejects

    def update(ep: writer.PublishedEpisode) -> EpisodeMeta:
        meta = EpisodeMeta.model_validate(ep.record.model_dump(include=set(EpisodeMeta.model_fields)))
        r = results.get(ep.record.source_episode_id)
        if r is None:
            return meta
        return meta.model_copy(update={"caption": r.caption, "caption_source": r.caption_source})

    card = DatasetCard.model_validate_json((root / CARD_PATH).read_text())
    cfg = PipelinesFile.load(pipelines).source(card.source)
    with dataset_lock(root):
        changed = writer.rewrite_episode_meta(root, update)
        writer.finalize_meta(root, card.source, cfg, load_rejects(root))
    return changed


def _text_captioner(cfg: CaptionsConfig, ids: set[str]) -> TemplateCaptioner | CachedCaptioner:
    if cfg.captioner == "template":
        return TemplateCaptioner()
    if cfg.captions_file is None:
        raise ValueError("the cached captioner needs --captions FILE (a JSONL of source_episode_id, caption)")
    captioner = CachedCaptioner(cfg.captions_file)
    captioner.check_known(ids)
    return captioner


def run_caption(opts: CaptionOptions) -> CaptionSummary:
    """`ingest caption PATH`: caption every published episode with the configured captioner."""
    root, cfg = opts.dataset, opts.captions
    published = writer.read_published(root)
    if not published:
        raise ValueError(f"{root}: no published episode (run `ingest run` first)")
    reused, errors = 0, []
    if cfg.captioner == "vlm":
        outcome = run_vlm(root, published, opts)
        results, reused, errors = outcome.results, outcome.reused, outcome.errors
    else:
        captioner = _text_captioner(cfg, {ep.record.source_episode_id for ep in published})
        results = {r.source_episode_id: r for r in captioner.caption([_request(ep) for ep in published])}
    changed = apply_captions(root, results, opts.pipelines)
    fallbacks = [r.source_episode_id for r in results.values() if r.fallback]
    vlm = cfg.captioner == "vlm"
    return CaptionSummary(
        dataset=root, captioner=cfg.captioner, episodes=len(published),
        captioned=len(results) - len(fallbacks), reused=reused, fallbacks=len(fallbacks) if vlm else 0,
        kept=[] if vlm else fallbacks, errors=errors, files_changed=changed,
    )  # fmt: skip
