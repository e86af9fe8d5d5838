"""Video transcoding (source MP4 -> 10 fps CFR episode MP4), image stats and probing, with PyAV only."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from pydantic import BaseModel, ConfigDict

from ingest.errors import EpisodeError
from schemas.atomic import atomic_path
from schemas.episode import FPS
from schemas.lerobot import FeatureStats, VideoInfo
from schemas.pipelines import VideoConfig

ENCODERS = {"h264": "libx264", "av1": "libsvtav1"}
SVTAV1_DEFAULT_PRESET = "12"  # lerobot's LIBSVTAV1_DEFAULT_PRESET, used when cfg.preset is an x264 name
PIX_FMT = "yuv420p"
STATS_TARGET_SIZE = 150  # lerobot's auto_downsample_height_width
STATS_MAX_SIZE = 300
TIME_TOLERANCE_S = 1e-4


class VideoResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_frames: int
    info: VideoInfo
    stats: FeatureStats
    source_width: int  # the source frames' size, before `output_size` scaled them
    source_height: int
    # where the picture lies in the published frame (x, y, width, height): all of it unless `fit: pad`
    picture: tuple[int, int, int, int] | None = None


class VideoProbe(BaseModel):
    """What a decoder sees in an MP4 (frames counted by decoding, times from each frame's pts)."""

    model_config = ConfigDict(extra="forbid")
    n_frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str
    fps: float
    first_pts_s: float | None
    max_spacing_error_s: float  # max |t[k+1] - t[k] - 1/fps|
    max_time_error_s: float  # max |t[k] - k/fps|: what lerobot's decoder asserts within 1e-4
    cfr_ok: bool  # spacing within 1e-4 of 1/fps


# ---------------------------------------------------------------------------------------------------------
# Stats (lerobot's compute_episode_stats for video features)


def stats_sample_indices(n: int) -> np.ndarray:
    """lerobot's `sample_indices`: about 100 (up to 10,000) evenly spaced indices, all when fewer."""
    n_samples = max(min(n, 100), min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, n_samples)).astype(np.int64)


def _stats_size(width: int, height: int) -> tuple[int, int]:
    """lerobot's `auto_downsample_height_width`: integer factor so the long side is about 150 px."""
    if max(width, height) < STATS_MAX_SIZE:
        return width, height
    factor = int(max(width, height) / STATS_TARGET_SIZE)
    return max(1, width // factor), max(1, height // factor)


class _ImageStats:
    """Running per-channel min/max/sum/sum of squares over RGB uint8 frames."""

    def __init__(self) -> None:
        self.n_frames = 0
        self.n_pixels = 0
        self.min = np.full(3, 255.0)
        self.max = np.zeros(3)
        self.sum = np.zeros(3)
        self.sumsq = np.zeros(3)

    def add(self, rgb: np.ndarray) -> None:
        px = rgb.reshape(-1, 3).astype(np.float64)
        self.n_frames += 1
        self.n_pixels += px.shape[0]
        self.min = np.minimum(self.min, px.min(axis=0))
        self.max = np.maximum(self.max, px.max(axis=0))
        self.sum += px.sum(axis=0)
        self.sumsq += (px * px).sum(axis=0)

    def result(self) -> FeatureStats:
        mean = self.sum / self.n_pixels
        std = np.sqrt(np.maximum(self.sumsq / self.n_pixels - mean * mean, 0.0))

        def chw(v: np.ndarray) -> list:
            return (v / 255.0).reshape(3, 1, 1).tolist()

        return FeatureStats(
            min=chw(self.min), max=chw(self.max), mean=chw(mean), std=chw(std), count=[self.n_frames]
        )


# ---------------------------------------------------------------------------------------------------------
# Transcode


def output_size(width: int, height: int, cfg: VideoConfig) -> tuple[int, int]:
    """The published size of a `width` x `height` source: scaled by one factor (never up) to fit inside
    the section's `cfg.width` x `cfg.height` box, each side rounded to an even number (yuv420p), at
    least 2. The source's aspect ratio is kept to within that rounding (at most 1 pixel per side).
    `fit: pad`: the box itself (the picture goes where `picture_box` says)."""
    if cfg.fit == "pad":
        return cfg.width, cfg.height
    s = min(1.0, cfg.width / width, cfg.height / height)
    return max(2, 2 * round(width * s / 2)), max(2, 2 * round(height * s / 2))


def picture_box(width: int, height: int, cfg: VideoConfig) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a `width` x `height` source's picture in its published frame: the whole frame,
    or with `fit: pad` the source scaled by one factor (up or down) to fit the box, centred, even."""
    if cfg.fit != "pad":
        return (0, 0, *output_size(width, height, cfg))
    s = min(cfg.width / width, cfg.height / height)
    w, h = min(cfg.width, 2 * round(width * s / 2)), min(cfg.height, 2 * round(height * s / 2))
    return 2 * ((cfg.width - w) // 4), 2 * ((cfg.height - h) // 4), w, h


def _padded(frame: av.VideoFrame, box: tuple[int, int, int, int], size: tuple[int, int]) -> av.VideoFrame:
    """The frame scaled into `box` (x, y, w, h) of a black `size` canvas, as yuv420p."""
    x, y, w, h = box
    canvas = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    canvas[y : y + h, x : x + w] = frame.reformat(w, h, format="rgb24", interpolation="AREA").to_ndarray()
    return av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format=PIX_FMT)


def _open_encoder(container: av.container.OutputContainer, cfg: VideoConfig) -> av.VideoStream:
    if cfg.codec == "av1":
        preset = cfg.preset if cfg.preset.isdigit() else SVTAV1_DEFAULT_PRESET
        options = {"crf": str(cfg.crf), "preset": preset, "g": str(cfg.gop)}
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner unless told otherwise
    else:
        options = {"crf": str(cfg.crf), "preset": cfg.preset, "g": str(cfg.gop)}
    if cfg.threads:
        options["threads"] = str(cfg.threads)
    stream = container.add_stream(ENCODERS[cfg.codec], rate=FPS, options=options)
    # the box until the first source frame says the size (`output_size`); the codec opens at its encode
    stream.width, stream.height, stream.pix_fmt = cfg.width, cfg.height, PIX_FMT
    stream.time_base = Fraction(1, FPS)
    return stream


class ImageDecoder:
    """The `Decoder` interface over encoded still images (JPEG/PNG per step, e.g. RLDS cameras)."""

    def __init__(self, src: Path, images: list[bytes]) -> None:
        self.src, self.images, self.n_decoded, self.error = src, images, len(images), ""

    def needed(self, frame_indices: np.ndarray) -> Iterator[tuple[int, av.VideoFrame]]:
        from PIL import Image, UnidentifiedImageError

        for i in np.unique(frame_indices):
            if i >= len(self.images):
                return
            try:
                rgb = np.asarray(Image.open(io.BytesIO(self.images[i])).convert("RGB"))
            except (UnidentifiedImageError, OSError) as e:
                self.n_decoded, self.error = int(i), f" (image {i} does not decode: {e})"
                return
            yield int(i), av.VideoFrame.from_ndarray(rgb, format="rgb24")


SEEK_MIN_FRAMES = 60  # a first needed frame this far in is reached by seeking to the keyframe before it


def frame_timestamps(container: av.container.InputContainer, stream: av.VideoStream) -> np.ndarray | None:
    """Every frame's pts in presentation order, from the packets (no decoding); None when a packet has
    none. Packets the demuxer marks as discarded (MP4 edit lists) are not frames the decoder outputs."""
    pts = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
    return np.sort(np.asarray(pts, dtype=np.int64))


def declared_frames(path: Path) -> int:
    """Frames in a video from its header, else by counting packets (nothing decoded). Raises
    EpisodeError naming the file when it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.frames) or sum(1 for pkt in container.demux(stream) if pkt.size)
    except (av.FFmpegError, OSError, IndexError) as e:
        raise EpisodeError(path, "video", f"unreadable video: {e}", stage="read") from e


def frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's frames from its header (nothing decoded). Raises EpisodeError naming
    the file when it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            return int(ctx.width), int(ctx.height)
    except (av.FFmpegError, OSError, IndexError) as e:
        raise EpisodeError(path, "video", f"unreadable video: {e}", stage="read") from e


class Decoder:
    """Decodes the needed frames of a source video (frame i = the i-th in presentation order): from the
    start, or, when the first needed frame is far in (a cut episode of a long video), from the keyframe
    before it. `n_decoded`: frames of the source reached (its length once it ends); `n_work`: frames the
    codec actually decoded."""

    def __init__(self, src: Path, threads: int = 0) -> None:
        self.src, self.threads, self.n_decoded, self.n_work, self.error = src, threads, 0, 0, ""

    def needed(self, frame_indices: np.ndarray) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield (source index, frame) for each distinct needed source frame; stop after the last one.

        A decode error mid-stream ends the iteration (it is reported as a short video)."""
        needed = np.unique(frame_indices)
        pts = self._seekable_pts(int(needed[0])) if needed[0] >= SEEK_MIN_FRAMES else None
        with av.open(str(self.src)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.threads:
                stream.thread_count = self.threads
            if pts is not None:
                container.seek(int(pts[needed[0]]), stream=stream, backward=True, any_frame=False)
            index_of = None if pts is None else {int(p): i for i, p in enumerate(pts)}
            yield from self._decode(container, stream, needed, index_of)

    def _seekable_pts(self, first: int) -> np.ndarray | None:
        """Every frame's pts when they can say which frame is which (present, distinct, reaching `first`)."""
        with av.open(str(self.src)) as container:
            pts = frame_timestamps(container, container.streams.video[0])
        if pts is None or first >= len(pts) or len(np.unique(pts)) != len(pts):
            return None
        return pts

    def _decode(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        needed: np.ndarray,
        index_of: dict[int, int] | None,
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        frames, pos = container.decode(stream), 0
        while pos < len(needed):
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as e:
                self.error = f" (decode error: {e})"
                return
            i = self.n_decoded if index_of is None else index_of.get(frame.pts, -1)
            self.n_decoded, self.n_work = max(self.n_decoded, i + 1), self.n_work + 1
            if i > needed[pos]:  # the seek landed past a needed frame: stop rather than misplace frames
                self.error = f" (frame {int(needed[pos])} not reached after seeking)"
                return
            if i == needed[pos]:
                pos += 1
                yield i, frame


def _encode_frames(
    decoder: Decoder,
    frame_indices: np.ndarray,
    stream: av.VideoStream,
    out: av.container.OutputContainer,
    cfg: VideoConfig,
) -> tuple[int, _ImageStats, tuple[int, int]]:
    """Scale each needed source frame once, encode it once per output slot; returns frames encoded,
    their stats and the source size (of the first frame; a later frame of another size is scaled to
    the same output size)."""
    sampled = set(stats_sample_indices(len(frame_indices)).tolist())
    stats, k, source = _ImageStats(), 0, (0, 0)
    for i, frame in decoder.needed(frame_indices):
        if k == 0:
            source = (frame.width, frame.height)
            stream.width, stream.height = width, height = output_size(frame.width, frame.height, cfg)
            stats_w, stats_h = _stats_size(width, height)
            box = picture_box(frame.width, frame.height, cfg)
        if box[2:] == (width, height):
            scaled = frame.reformat(width, height, format=PIX_FMT, interpolation="AREA")
        else:
            scaled = _padded(frame, box, (width, height))
        scaled.pict_type = av.video.frame.PictureType.NONE
        while k < len(frame_indices) and frame_indices[k] == i:
            if k in sampled:
                stats.add(
                    scaled.reformat(stats_w, stats_h, format="rgb24", interpolation="AREA").to_ndarray()
                )
            scaled.pts, scaled.time_base = k, Fraction(1, FPS)
            out.mux(stream.encode(scaled))
            k += 1
    out.mux(stream.encode(None))
    return k, stats, source


def _check_indices(src: Path, frame_indices: np.ndarray) -> None:
    if len(frame_indices) == 0:
        raise EpisodeError(src, "video", "no frames requested", stage="video")
    if frame_indices[0] < 0 or np.any(np.diff(frame_indices) < 0):
        raise EpisodeError(
            src, "video", "frame_indices must be non-negative and non-decreasing", stage="video"
        )


def transcode(
    src: Path, frame_indices: np.ndarray, dst: Path, cfg: VideoConfig, images: list[bytes] | None = None
) -> VideoResult:
    """Encode output frame k = source frame `frame_indices[k]` at 10 fps CFR (pts k/10) into `dst`.
    The source frames are those of the video `src`, or the encoded `images` when given (`src` then only
    names them in errors).

    Raises EpisodeError(stage="video") when the source cannot be read or ends before the last needed
    frame; `dst` then does not exist.
    """
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    _check_indices(src, frame_indices)
    decoder = Decoder(src, cfg.threads) if images is None else ImageDecoder(src, images)
    try:
        with atomic_path(dst) as tmp, av.open(str(tmp), "w", format="mp4") as out:
            stream = _open_encoder(out, cfg)
            n, stats, source = _encode_frames(decoder, frame_indices, stream, out, cfg)
            if n != len(frame_indices):
                needed = int(frame_indices[-1]) + 1
                what = f"source has {decoder.n_decoded} frames{decoder.error}, needed {needed}"
                raise EpisodeError(
                    src, "video", f"{what} ({n} of {len(frame_indices)} output frames)", stage="video"
                )
    except EpisodeError:
        dst.unlink(missing_ok=True)
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        dst.unlink(missing_ok=True)
        raise EpisodeError(src, "video", f"cannot transcode: {e}", stage="video") from e
    width, height = output_size(*source, cfg)
    info = VideoInfo(fps=FPS, height=height, width=width, codec=cfg.codec, pix_fmt=PIX_FMT)
    return VideoResult(
        n_frames=n, info=info, stats=stats.result(), source_width=source[0], source_height=source[1],
        picture=picture_box(*source, cfg),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Probe


def probe(path: Path, fps: float = FPS) -> VideoProbe:
    """Decode every frame of `path` and report count, size, codec and timing against `fps`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        times = [float(f.pts * f.time_base) for f in container.decode(stream) if f.pts is not None]
        ctx = stream.codec_context
        codec = ctx.codec.canonical_name
        width, height, pix_fmt = ctx.width, ctx.height, ctx.pix_fmt or ""
        rate = float(stream.average_rate or stream.base_rate or 0)
    t = np.sort(np.asarray(times, dtype=np.float64))
    spacing = float(np.abs(np.diff(t) - 1 / fps).max()) if len(t) > 1 else 0.0
    drift = float(np.abs(t - np.arange(len(t)) / fps).max()) if len(t) else 0.0
    return VideoProbe(
        n_frames=len(t),
        width=width,
        height=height,
        codec=codec,
        pix_fmt=pix_fmt,
        fps=rate,
        first_pts_s=float(t[0]) if len(t) else None,
        max_spacing_error_s=spacing,
        max_time_error_s=drift,
        cfr_ok=spacing <= TIME_TOLERANCE_S,
    )
