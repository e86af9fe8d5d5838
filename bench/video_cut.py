"""Benchmark cutting one short episode out of a long video (Ego4D / EPIC / v3.0 LeRobot inputs).

    .venv/bin/python bench/video_cut.py                     # 5 min 640x360 source, 10 s clip at 4.4 min
    .venv/bin/python bench/video_cut.py --minutes 2 --start-s 100

`transcode` of a 10 Hz clip twice: decoding from the first frame (seeking disabled), then with the
Decoder's seek to the keyframe before the clip. Prints seconds and frames decoded for each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ingest import video
from schemas.pipelines import VideoConfig

SOURCE_FPS = 30


def make_source(path: Path, frames: int, gop: int) -> None:
    """A 640x360 H.264 source with moving noise (so frames are not trivially cheap to decode)."""
    base = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=SOURCE_FPS, options={"g": str(gop), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * k, axis=1), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, SOURCE_FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def timed_cut(src: Path, indices: np.ndarray, dst: Path, seek: bool) -> tuple[float, int]:
    video.SEEK_MIN_FRAMES = 60 if seek else 1 << 62
    start = time.perf_counter()
    video.transcode(src, indices, dst, VideoConfig())
    seconds = time.perf_counter() - start
    decoder = video.Decoder(src)  # the same decode again, untimed, to count the work
    sum(1 for _ in decoder.needed(indices))
    return seconds, decoder.n_work


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--start-s", type=float, default=264.0)
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--gop", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mp4"
        make_source(src, int(args.minutes * 60 * SOURCE_FPS), args.gop)
        first = int(args.start_s * SOURCE_FPS)
        indices = first + np.arange(int(args.clip_s * 10)) * (SOURCE_FPS // 10)
        for seek in (False, True):
            seconds, work = timed_cut(src, indices, Path(tmp) / f"out_{seek}.mp4", seek)
            label = "seek to keyframe" if seek else "decode from start"
            print(f"{label:>18}: {seconds:6.2f} s, {work} frames decoded for {len(indices)} output frames")


if __name__ == "__main__":
    main()
