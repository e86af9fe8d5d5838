"""An action-free clip: a video file between two timestamps, with a caption. Shared by ego4d, epic, videos.

A source parses its annotations into `ClipSpec`s (one per future episode, in seconds of the video);
`build_episodes` turns one into canonical episodes:

- the video's frame times come from its packets' presentation timestamps (demuxed, not decoded; cached
  per worker), relative to its first frame, so variable frame rates are handled;
- output frame k is at `start + k / 10` s, k < K with K the largest count such that
  `(K - 1) / 10 <= end - start`; it shows the source frame whose time is nearest (ties: the earlier);
- a clip longer than `max_episode_s` is cut into consecutive parts `<id>#<part>`;
- state and action are zeros with every mask false, `has_action` false, tier `actionless`;
- caption: `clean_instruction` of the source text (`caption_source: source`, the text itself in
  `task_original`); a text that cleans to nothing falls back to the clip's template (the `videos`
  source's file name, `caption_source: template`), and without a template the clip is rejected.

Bad input is an `EpisodeError` naming the annotation file and record (reversed or empty segment, a time
past the video's end, an overlap when the section rejects overlaps, an unknown video id) or the video
(missing, cannot be decoded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.convert.resample import chunk_ranges, output_count
from ingest.convert.text import clean_instruction
from ingest.errors import EpisodeError
from ingest.sources.base import Absent, SourceEpisodeRef, assemble_episode, natural_key
from ingest.video import frame_timestamps
from schemas.episode import FPS, CanonicalEpisode, VideoSource
from schemas.source_config import SourceConfig
from schemas.sources_human import ClipSourceConfig, MissingVideos, Overlap

TIE_EPS = 1e-9  # seconds: nearer by less than this counts as a tie (goes to the earlier frame)


class ClipSpec(BaseModel):
    """One annotated segment of one video, as parsed from the source's annotation files."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    clip_id: str  # the source_episode_id (never contains '#')
    video_id: str
    video: str | None  # the resolved video file; None when it is not under the input
    annotation: str  # the file the segment comes from (named in rejects)
    where: str  # the record inside it, e.g. "P01_11_0" or "<uid>/narration_pass_1[3]"
    start_s: float
    end_s: float | None  # None: to the video's end
    text: str  # the source's own text (task_original)
    template: str | None = None  # caption source when `text` cleans to nothing
    anchor_s: float | None = None  # the annotated instant (a narration): window clipped to the video
    metrics: dict[str, float] = Field(default_factory=dict)
    problem: tuple[str, str] | None = None  # (field, message) found while parsing the annotations
    known_video: bool = True  # False: the annotations name a video id the source does not know
    skipped: bool = False  # `missing_videos: skip` and no video file: left out, counted by `ingest run`

    def error(self, field: str, message: str) -> EpisodeError:
        return EpisodeError(self.annotation, f"{self.where}.{field}", message)


# ------------------------------------------------------------------------------------------- discovery


def find_videos(root: Path, extensions: Iterable[str]) -> dict[str, Path]:
    """Video files under `root` by file stem (the first in sorted path order wins a duplicate stem)."""
    exts = {e.lower() for e in extensions}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in exts and not path.name.startswith(".") and path.is_file():
            found.setdefault(path.stem, path)
    return found


def find_file(root: Path, name: str) -> Path | None:
    """`root/name` when it exists, else the first file called `name` below `root` (sorted), else None."""
    if (root / name).is_file():
        return root / name
    return next((p for p in sorted(root.rglob(name)) if p.is_file()), None)


def mark_overlaps(specs: list[ClipSpec], policy: Overlap) -> list[ClipSpec]:
    """With policy "reject", a segment starting before an earlier one of its video ends gets a problem."""
    if policy == "allow":
        return specs
    out: list[ClipSpec] = []
    last: dict[str, ClipSpec] = {}  # per video: the checked segment reaching furthest
    for spec in sorted(specs, key=lambda s: (s.video_id, s.start_s, natural_key(s.clip_id))):
        end = _end(spec)
        if spec.problem is not None or end <= spec.start_s:  # already bad, or reversed (rejected later)
            out.append(spec)
            continue
        prev = last.get(spec.video_id)
        if prev is not None and spec.start_s < _end(prev):
            msg = f"segment {spec.start_s:.3f}-{end:.3f} s overlaps {prev.where} (ends {_end(prev):.3f} s)"
            spec = spec.model_copy(update={"problem": ("start", msg)})
        elif prev is None or end > _end(prev):
            last[spec.video_id] = spec
        out.append(spec)
    return out


def _end(spec: ClipSpec) -> float:
    return spec.end_s if spec.end_s is not None else float("inf")


def invalid_record(clip_id: str, video_id: str, annotation: Path, where: str, e: ValidationError) -> ClipSpec:
    """A record the annotation schema refuses: always a reject (never skipped), naming the field."""
    err = e.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "record"
    return ClipSpec(
        clip_id=clip_id, video_id=video_id, video=None, annotation=str(annotation), where=where,
        start_s=0.0, end_s=None, text="", problem=(field, err["msg"]), known_video=False,
    )  # fmt: skip


def mark_unknown(spec: ClipSpec, field: str, message: str) -> ClipSpec:
    """An unknown video id is a reject even where missing video files are skipped."""
    problem = spec.problem or (field, message)
    return spec.model_copy(update={"known_video": False, "problem": problem})


def select(specs: Iterable[ClipSpec], missing_videos: MissingVideos) -> dict[str, ClipSpec]:
    """The clips by id; with `missing_videos: skip`, those of a known video without a file are marked
    `skipped`: discovery leaves them out and `ingest run` counts them."""
    skip = missing_videos == "skip"
    return {
        s.clip_id: s.model_copy(update={"skipped": True}) if skip and s.video is None and s.known_video else s
        for s in specs
    }


def refs_for(specs: Iterable[ClipSpec], root: Path) -> list[SourceEpisodeRef]:
    """One SourceEpisodeRef per clip, sorted by video then start time, carrying its ClipSpec: a worker
    converts it without reading the annotation files again."""
    refs = []
    for s in sorted(specs, key=lambda s: (natural_key(s.video_id), s.start_s, natural_key(s.clip_id))):
        files = {"video": s.video} if s.video else {}
        files |= {"annotation": s.annotation, "root": str(root)}
        refs.append(SourceEpisodeRef(source_episode_id=s.clip_id, files=files, record=s.model_dump_json()))
    return refs


def spec_of(ref: SourceEpisodeRef) -> ClipSpec:
    """The clip a discovered ref carries."""
    if ref.record is None:
        msg = f"{ref.source_episode_id!r} carries no clip: discover the input again"
        raise EpisodeError(ref.files.get("annotation", ""), "record", msg)
    return ClipSpec.model_validate_json(ref.record)


class ClipSource:
    """The `Source` (ingest/sources/base.py) of an action-free video format: the format's module only
    parses its annotations, `clip_index(root, cfg_json) -> {clip id: ClipSpec}`, once, where discovery
    runs (the driver; cached there). Each ref carries its own clip, so a worker never parses the
    annotations (Ego4D's `narration.json` is ~0.5 GB): it gets only its episodes' rows."""

    def __init__(
        self,
        name: str,
        config_type: type[ClipSourceConfig],
        clip_index: Callable[[str, str], dict[str, ClipSpec]],
        layout: str,
    ) -> None:
        self.name, self.config_type, self.clip_index = name, config_type, clip_index
        self.layout = layout
        self.requires = ("av",)

    def _config(self, cfg: SourceConfig) -> ClipSourceConfig:
        if not isinstance(cfg, self.config_type):
            raise TypeError(f"{self.name} needs a {self.config_type.__name__}, got {type(cfg).__name__}")
        return cfg

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        root = Path(root).resolve()
        specs = self.clip_index(str(root), self._config(cfg).model_dump_json()).values()
        return refs_for([s for s in specs if not s.skipped], root)

    def skipped(self, root: Path, cfg: SourceConfig) -> list[str]:
        """The annotated segments discovery left out because their video is not under `root`."""
        specs = self.clip_index(str(Path(root).resolve()), self._config(cfg).model_dump_json()).values()
        return [f"{s.where} ({s.video_id})" for s in specs if s.skipped]

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        return build_episodes(spec_of(ref), self._config(cfg))


# ---------------------------------------------------------------------------------------------- video


@dataclass(frozen=True)
class Timeline:
    """Presentation times of a video's frames, seconds from its first frame (frame i = i-th decoded)."""

    times: np.ndarray  # float64 [N], strictly increasing, times[0] == 0

    @property
    def duration_s(self) -> float:
        """Last frame time plus one (median) frame interval."""
        step = float(np.median(np.diff(self.times))) if len(self.times) > 1 else 1.0 / FPS
        return float(self.times[-1]) + step


def _packet_times(path: Path) -> np.ndarray:
    """Frame i's presentation time in seconds: the frame numbering `ingest.video.Decoder` uses."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise EpisodeError(path, "video", "no video stream (audio or data only)", stage="read")
        stream = container.streams.video[0]
        pts = frame_timestamps(container, stream)
        base = float(stream.time_base)
    if pts is None:
        raise ValueError("a video packet has no timestamp: frames cannot be placed in time")
    return pts.astype(np.float64) * base


def _first_frame(path: Path) -> None:
    with av.open(str(path)) as container:
        if next(container.decode(video=0), None) is None:
            raise EpisodeError(path, "video", "0 frames: no frame decodes", stage="read")


@lru_cache(maxsize=8)
def _timeline(path: str, mtime_ns: int, size: int) -> Timeline:
    try:
        times = _packet_times(Path(path))
        _first_frame(Path(path))
    except (av.FFmpegError, OSError, IndexError, StopIteration, ValueError) as e:
        raise EpisodeError(path, "video", f"cannot be decoded: {type(e).__name__}: {e}", stage="read") from e
    if len(times) == 0:
        raise EpisodeError(path, "video", "0 frames", stage="read")
    return Timeline(times=times - times[0])


def read_timeline(path: Path) -> Timeline:
    """The video's frame times (cached per worker process). Raises EpisodeError when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise EpisodeError(path, "video", f"video file missing: {e}", stage="read") from e
    return _timeline(str(path), st.st_mtime_ns, st.st_size)


def nearest_frames(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame time nearest each target (ties: the earlier frame)."""
    if len(times) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    hi = np.clip(np.searchsorted(times, targets, side="left"), 1, len(times) - 1)
    lo = hi - 1
    take_hi = (times[hi] - targets) < (targets - times[lo]) - TIE_EPS
    return np.where(take_hi, hi, lo).astype(np.int64)


def plan_frames(times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """The source frame of each 10 Hz output frame of the segment [start_s, end_s]."""
    targets = start_s + np.arange(output_count(end_s - start_s)) / FPS
    return nearest_frames(times, targets)


# -------------------------------------------------------------------------------------------- episodes


def segment_bounds(spec: ClipSpec, timeline: Timeline, tolerance_s: float) -> tuple[float, float]:
    """[start, end] in seconds, clipped to the last frame's time (never extrapolating past it), or
    EpisodeError: reversed / empty / negative segment, or past the video's end by more than the tolerance.
    A narration window is clipped to the video; only its instant must lie inside."""
    duration, last = timeline.duration_s, float(timeline.times[-1])
    if spec.anchor_s is not None:
        if not 0 <= spec.anchor_s <= duration + tolerance_s:
            msg = f"{spec.anchor_s:.3f} s is outside the video (0-{duration:.3f} s)"
            raise spec.error("timestamp", msg)
        start = min(max(spec.start_s, 0.0), last)
        return start, min(max(_end(spec), start), last)
    end = _end(spec) if spec.end_s is not None else last
    if spec.start_s < 0:
        raise spec.error("start", f"negative start time {spec.start_s:.3f} s")
    if end <= spec.start_s:
        raise spec.error("end", f"reversed or empty segment: end {end:.3f} s <= start {spec.start_s:.3f} s")
    if spec.start_s >= duration or end > duration + tolerance_s:
        msg = f"segment {spec.start_s:.3f}-{end:.3f} s is past the video's end ({duration:.3f} s)"
        raise spec.error("end", msg)
    return min(spec.start_s, last), min(end, last)


def caption(spec: ClipSpec) -> tuple[str, str, str]:
    """(caption, caption_source, task_original)."""
    text = clean_instruction(spec.text)
    if text:
        return text, "source", spec.text
    if spec.template is not None:
        return clean_instruction(spec.template), "template", spec.text.strip() or spec.template
    raise spec.error("text", f"no caption text left after cleaning {spec.text!r}")


def _episode(ep_id: str, frames: np.ndarray, video: Path, text: tuple[str, str, str],
             metrics: dict[str, float], cfg: ClipSourceConfig) -> CanonicalEpisode:  # fmt: skip
    t = len(frames)
    return assemble_episode(
        ep_id, cfg, Absent.of_length(t), text, has_action=False,
        quality_metrics={"duration_s": t / FPS, "frames": float(t), **metrics},
        videos={cfg.camera_key: VideoSource(path=video, frame_indices=frames)},
    )  # fmt: skip


def build_episodes(spec: ClipSpec, cfg: ClipSourceConfig) -> list[CanonicalEpisode]:
    """The canonical action-free episodes of one clip (several when it is longer than `max_episode_s`)."""
    if spec.problem is not None:
        raise spec.error(*spec.problem)
    if spec.video is None:
        raise spec.error("video", f"no video file for {spec.video_id!r} under the input")
    text = caption(spec)
    timeline = read_timeline(Path(spec.video))
    start, end = segment_bounds(spec, timeline, cfg.end_tolerance_s)
    frames = plan_frames(timeline.times, start, end)
    ranges = chunk_ranges(len(frames), int(cfg.max_episode_s * FPS))
    episodes = []
    for part, (a, b) in enumerate(ranges):
        ep_id = spec.clip_id if len(ranges) == 1 else f"{spec.clip_id}#{part}"
        metrics = {**spec.metrics, "start_s": start + a / FPS, "end_s": start + (b - 1) / FPS}
        episodes.append(_episode(ep_id, frames[a:b], Path(spec.video), text, metrics, cfg))
    return episodes
