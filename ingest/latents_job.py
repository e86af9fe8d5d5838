"""The latents job: cache DINOv3 latents of every published episode (CONTRACT.md section 7).

    decode (CPU tasks)     ->  encode (actor pool; a GPU per actor   ->  driver: assembles each
    frames at the policy's     when the cluster has GPUs): float16       (episode, camera) in order
    size, in chunks            latents                                   and writes its file

Decoding and encoding overlap (Ray Data streams between the two stages). Each file is written
atomically with its channel moments in the safetensors header; `meta/latents.json` (identity, layout,
stride, dataset-wide per-channel mean/std) is rebuilt from all the files' headers, so a re-run encodes
only what is missing and a killed run loses nothing already written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ingest.cluster import init_ray, progress, quiet_data_context, shutdown_ray
from schemas.atomic import write_text_atomic
from schemas.errors import Refused
from schemas.latents import LATENTS_META_PATH, LatentsConfig, LatentsMeta, latents_path
from schemas.lerobot import EPISODES_PATH, INFO_PATH, EpisodeRecord, InfoJson, video_path
from schemas.reject import RejectRecord

CHUNK_FRAMES = 64  # frames per decode->encode row: bounds what one row holds (~17 MB at 224x398)
IDENTITY_KEYS = ("model_id", "revision", "random_weights", "config_sha256", "init_seed", "patch_size",
                 "resize", "tokens", "n_registers", "n_tokens", "dim")  # fmt: skip


class LatentsOptions(BaseModel):
    """What `ingest latents` (and `ingest run --latents`) accepts."""

    model_config = ConfigDict(extra="forbid")
    dataset: Path
    latents: LatentsConfig
    address: str | None = None
    workers: int | None = Field(None, gt=0, description="decode tasks at once (default: CPUs)")
    encoders: int | None = Field(None, gt=0, description="encoder actors (default: GPUs, or 1 on CPU)")
    progress: bool = True


class LatentsSummary(BaseModel):
    dataset: Path
    files: int
    encoded: int
    skipped: int
    rejected: int
    random_weights: bool
    replaced: str | None = None  # the other weights the cache held, all re-encoded by this run


class Job(BaseModel):
    """One (episode, camera) to encode."""

    episode_index: int
    camera: str
    video: str
    out: str
    frames: list[int]


# ----------------------------------------------------------------------------- planning (driver)


def _episodes(root: Path) -> tuple[InfoJson, list[EpisodeRecord]]:
    info = InfoJson.model_validate_json((root / INFO_PATH).read_text())
    lines = (root / EPISODES_PATH).read_text().splitlines()
    return info, [EpisodeRecord.model_validate_json(line) for line in lines if line.strip()]


def _is_cached(path: Path, frames: np.ndarray, images: bool) -> bool:
    """The file holds these frames (and their images when asked for: an older file without them is
    encoded again)."""
    from schemas.latents_reader import has_images, latent_frame_indices

    try:
        return np.array_equal(latent_frame_indices(path), frames) and (not images or has_images(path))
    except Exception:  # noqa: BLE001 - unreadable or torn: encode it again
        return False


def plan(root: Path, cfg: LatentsConfig, force: bool = False) -> tuple[list[Job], int]:
    """Every (episode, camera) whose latents file is missing or stale (all of them with `force`); and how
    many are cached."""
    from ingest.latents import latent_frames

    info, episodes = _episodes(root)
    todo, cached = [], 0
    for ep in episodes:
        frames = latent_frames(ep.length, cfg.stride)
        for cam in info.video_keys():
            out = root / latents_path(ep.episode_index, cam)
            if not force and _is_cached(out, frames, cfg.images):
                cached += 1
                continue
            video = str(root / video_path(ep.episode_index, cam))
            todo.append(Job(episode_index=ep.episode_index, camera=cam, video=video, out=str(out),
                            frames=frames.tolist()))  # fmt: skip
    return todo, cached


WEIGHT_KEYS = ("model_id", "revision", "random_weights", "init_seed")


def _asked_weights(cfg: LatentsConfig) -> dict[str, Any]:
    """The identity (`WEIGHT_KEYS`) of the weights the config asks for, without loading them."""
    from ingest.latents import RANDOM_SEED, _weights_identity

    if cfg.model_dir is None:
        return {"model_id": None, "revision": None, "random_weights": True, "init_seed": RANDOM_SEED}
    if not (cfg.model_dir / "config.json").is_file():
        what = "does not exist" if not cfg.model_dir.exists() else "has no config.json"
        fix = "give a local DINOv3 folder (config.json + weights)"
        raise Refused(f"--model-dir {cfg.model_dir} {what}", fix)
    model_id, revision = _weights_identity(cfg.model_dir)
    return {"model_id": model_id, "revision": revision, "random_weights": False, "init_seed": None}


def _other_weights(root: Path, cfg: LatentsConfig) -> str | None:
    """What the cache was encoded with, when that is not the weights asked for (None: the same, or none)."""
    held, asked = _identity_from_meta(root), _asked_weights(cfg)
    if held is None or all(held[k] == asked[k] for k in WEIGHT_KEYS):
        return None
    return "random weights" if held["random_weights"] else f"{held['model_id']} ({held['revision']})"


def _check_same_encoder(root: Path, cfg: LatentsConfig) -> None:
    """A cache is one encoder's: refuse to mix stride or layout with what is already there."""
    path = root / LATENTS_META_PATH
    if not path.exists():
        return
    old = json.loads(path.read_text())
    for key in ("stride", "tokens", "resize"):
        if old.get(key) != getattr(cfg, key):
            raise ValueError(
                f"{path}: cached with {key}={old.get(key)!r}, asked for {getattr(cfg, key)!r}; "
                "delete latents/ and meta/latents.json to re-encode"
            )


# ----------------------------------------------------------------------------- Ray stages


def _decode_rows(row: dict[str, Any], resize: str) -> Iterator[dict[str, Any]]:
    """CPU stage: one Job in, its frames out in chunks (or one row carrying the error)."""
    from ingest.errors import EpisodeError
    from ingest.latents import decode_chunks

    job = Job.model_validate_json(row["job"])
    frames = np.asarray(job.frames, dtype=np.int64)
    start = 0
    try:
        for images in decode_chunks(Path(job.video), frames, resize, CHUNK_FRAMES):
            yield {"job": row["job"], "start": start, "images": images, "error": ""}
            start += len(images)
    except EpisodeError as e:
        yield {"job": row["job"], "start": start, "images": np.zeros((0, 1, 1, 3), np.uint8), "error": str(e)}


class EncodeActor:
    """GPU (or CPU) stage: a frozen encoder, loaded once per actor."""

    def __init__(self, cfg_json: str, cpu_threads: int) -> None:
        import torch

        from ingest.latents import load_encoder

        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        self.encoder = load_encoder(LatentsConfig.model_validate_json(cfg_json))
        self.identity = json.dumps({k: getattr(self.encoder, k) for k in IDENTITY_KEYS})
        cfg = LatentsConfig.model_validate_json(cfg_json)
        self.batch, self.keep_images, self.resize = cfg.batch_size, cfg.images, cfg.resize

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from ingest.latents import square_frames

        images = row.pop("images")
        parts = [self.encoder.encode(images[i : i + self.batch]) for i in range(0, len(images), self.batch)]
        row["latents"] = np.concatenate(parts) if parts else np.zeros((0, 1, 1), np.float16)
        keep = self.keep_images and len(images)
        row["frames"] = square_frames(images, self.resize) if keep else np.zeros((0, 1, 1, 3), np.uint8)
        row["identity"] = self.identity
        return row


# ----------------------------------------------------------------------------- driver


class Assembler:
    """Collects the chunks of each (episode, camera) in order, writes the file when it is complete."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.frames: dict[str, list[np.ndarray]] = {}
        self.identity: dict[str, Any] | None = None
        self.written = 0
        self.finished: list[str] = []
        self.rejects: dict[str, RejectRecord] = {}

    def add(self, row: dict[str, Any]) -> bool:
        """Returns True when the row finished its (episode, camera)."""
        from ingest.latents import ChannelStats, write_episode_latents

        job = Job.model_validate_json(row["job"])
        if row["error"]:
            self.parts.pop(job.out, None)
            self.frames.pop(job.out, None)
            self.rejects[job.out] = RejectRecord(source_path=job.video, stage="latents", error=row["error"])
            return True
        self.identity = json.loads(row["identity"])
        chunks = self.parts.setdefault(job.out, [])
        chunks.append(np.asarray(row["latents"], dtype=np.float16))
        if len(row["frames"]):
            self.frames.setdefault(job.out, []).append(np.asarray(row["frames"], dtype=np.uint8))
        if sum(len(c) for c in chunks) < len(job.frames):
            return False
        latents = np.concatenate(self.parts.pop(job.out))
        frames = self.frames.pop(job.out, None)
        images = np.concatenate(frames) if frames else None
        stats = ChannelStats(latents.shape[-1]).add(latents)
        index = np.asarray(job.frames, dtype=np.int64)
        write_episode_latents(Path(job.out), latents, index, stats, images)
        self.written += 1
        self.finished.append(job.out)
        return True


def _pool_sizes(opts: LatentsOptions, workers: int) -> tuple[int, float, int]:
    """(encoder actors, GPUs per actor, torch CPU threads per actor)."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and opts.latents.device != "cpu":
        return opts.encoders or gpus, 1.0, 0
    return opts.encoders or 1, 0.0, max(1, workers // (opts.encoders or 1))


def _stream(todo: list[Job], opts: LatentsOptions, workers: int) -> Iterator[dict[str, Any]]:
    import ray

    quiet_data_context()
    n_actors, gpus, threads = _pool_sizes(opts, workers)
    cfg = opts.latents.model_copy(update={"device": "cuda" if gpus else "cpu"})
    ds = ray.data.from_items([{"job": j.model_dump_json()} for j in todo], override_num_blocks=len(todo))
    ds = ds.flat_map(
        _decode_rows,
        fn_kwargs={"resize": cfg.resize},
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=workers),
    )
    ds = ds.map(
        EncodeActor,
        fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "cpu_threads": threads},
        num_gpus=gpus,
        num_cpus=0 if gpus else 1,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
    )
    yield from ds.iter_rows()


def _identity_from_meta(root: Path) -> dict[str, Any] | None:
    path = root / LATENTS_META_PATH
    if not path.exists():
        return None
    meta = LatentsMeta.model_validate_json(path.read_text())
    return {k: getattr(meta, k) for k in IDENTITY_KEYS}


def write_meta(root: Path, cfg: LatentsConfig, identity: dict[str, Any]) -> LatentsMeta:
    """`meta/latents.json` with dataset-wide per-camera moments merged from every file's header."""
    from ingest.latents import ChannelStats, read_file_stats
    from schemas.latents_reader import has_images

    info, episodes = _episodes(root)
    stats = {cam: ChannelStats(identity["dim"]) for cam in info.video_keys()}
    images = []
    for ep in episodes:
        for cam in stats:
            path = root / latents_path(ep.episode_index, cam)
            if path.exists():
                stats[cam].merge(read_file_stats(path, identity["dim"]))
                images.append(has_images(path))
    every = bool(images) and all(images)
    meta = LatentsMeta(**identity, stride=cfg.stride, cameras=sorted(stats), images=every,
                       stats={c: s.moments() for c, s in stats.items()})  # fmt: skip
    write_text_atomic(root / LATENTS_META_PATH, meta.model_dump_json(indent=2) + "\n")
    return meta


def _record_rejects(root: Path, done: Assembler) -> None:
    """Latents failures join `meta/rejects.jsonl` (stage "latents"); successes clear earlier ones."""
    from ingest.workdir import clear_reject, load_rejects, save_reject
    from ingest.writer import rewrite_rejects

    for out in done.finished:
        clear_reject(root, f"latents:{out}")
    for out, reject in done.rejects.items():
        save_reject(root, reject, f"latents:{out}")
    rewrite_rejects(root, load_rejects(root))


def run_latents(opts: LatentsOptions) -> LatentsSummary:
    """`ingest latents PATH`: encode what is missing, then rebuild `meta/latents.json`."""
    from ingest.latents import NO_WEIGHTS_MESSAGE

    root, cfg = opts.dataset, opts.latents
    if cfg.model_dir is None and not cfg.random_weights:
        raise ValueError(NO_WEIGHTS_MESSAGE)
    _check_same_encoder(root, cfg)
    replaced = _other_weights(root, cfg)  # another encoder's cache: every file is encoded again
    todo, cached = plan(root, cfg, force=replaced is not None)
    done = Assembler()
    if todo:
        started, workers = init_ray(opts.address, opts.workers)
        try:
            with progress(opts.progress) as bar:
                task = bar.add_task("latents", total=len(todo), rejects=0)
                for row in _stream(todo, opts, workers):
                    if done.add(row):
                        bar.update(task, advance=1, rejects=len(done.rejects))
        finally:
            shutdown_ray(started)
        _record_rejects(root, done)
        if replaced is not None:  # a file that failed with the new weights must not keep the old latents
            for out in done.rejects:
                Path(out).unlink(missing_ok=True)
    identity = done.identity or _identity_from_meta(root)
    if identity is not None:
        write_meta(root, cfg, identity)
    return LatentsSummary(
        dataset=root,
        files=cached + done.written,
        encoded=done.written,
        skipped=cached,
        rejected=len(done.rejects),
        random_weights=bool(identity and identity["random_weights"]),
        replaced=replaced,
    )
