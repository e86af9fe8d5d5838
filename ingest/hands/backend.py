"""The hand-estimator interface and its MediaPipe Hands backend.

A backend turns one RGB frame of a video into `Detection`s: per hand the 21 image landmarks (pixels, and a
relative depth at the same scale), the 21 metric landmarks (metres, hand-centred, in axes of their own:
not the camera's, lift.py rotates them), the side and a score. `reset()` starts a new video (trackers
forget). A heavier estimator (a HaMeR / WiLoR-style GPU model with weights from a local folder) adds a
class with the same three methods and a name in `ESTIMATORS`; the lifting (`lift.py`) does not change.

`MediaPipeHands` runs `mediapipe_worker.py` in the estimator's own interpreter (tools/hands_env.sh builds it:
mediapipe 0.10.21 needs numpy<2 and protobuf<5) as one long-lived subprocess, streaming frames over its
stdin / stdout as length-prefixed raw bytes; replies are JSON. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from schemas.canonical import N_KEYPOINTS, Side
from schemas.hands import HandsConfig

HANDS_VENV_ENV = "EI_FORGE_HANDS_VENV"
DEFAULT_HANDS_VENV = Path.home() / ".cache" / "ei-forge" / "hands-mediapipe-0.10.21"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
# MediaPipe's legacy Hands labels handedness as if the image were mirrored (a selfie camera): on an
# egocentric, unmirrored frame its "Left" is the wearer's right hand (checked on EgoDex, docs/HANDS.md).
MIRRORED_LABELS: dict[str, Side] = {"Left": "right", "Right": "left"}


@dataclass(frozen=True)
class Detection:
    """One hand in one frame."""

    image: np.ndarray  # float64 [21, 2] pixels (x right, y down) in the frame given
    depth: np.ndarray  # float64 [21] relative depth in pixels (+ away from the camera, wrist near 0)
    world: np.ndarray  # float64 [21, 3] metres, origin near the hand's centre, axes of its own
    side: Side
    score: float  # the handedness classifier's confidence in `side`


@dataclass(frozen=True)
class FrameEstimate:
    """What a backend finds in one frame: the hands, and the camera's rotation since the previous frame
    (`x_now = R x_prev`, from background tracks; None when not estimated or not enough tracks)."""

    hands: list[Detection]
    camera_rotation: np.ndarray | None = None


class HandEstimator(Protocol):
    """What every backend gives (`MediaPipeHands`; later a GPU model)."""

    name: str

    def reset(self, K: np.ndarray | None = None) -> None: ...

    def estimate(self, frame: np.ndarray) -> FrameEstimate: ...

    def close(self) -> None: ...


def hands_python() -> Path:
    """The estimator environment's interpreter; FileNotFoundError naming how to build it."""
    venv = Path(os.environ.get(HANDS_VENV_ENV, DEFAULT_HANDS_VENV))
    python = venv / "bin" / "python"
    if not python.is_file():
        msg = f"no hands estimator environment at {venv}; run `make setup` (tools/hands_env.sh)"
        raise FileNotFoundError(msg)
    return python


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    buf = stream.read(n)
    if len(buf) != n:
        raise EOFError("the hands estimator closed its output")
    return buf


def parse_reply(reply: dict, width: int, height: int) -> FrameEstimate:
    """The worker's JSON reply -> a FrameEstimate."""
    cam = reply.get("camera")
    R = None if cam is None else np.asarray(cam["R"], dtype=np.float64)
    if R is not None and R.shape != (3, 3):
        raise ValueError(f"hands estimator reply: camera rotation of shape {R.shape}")
    return FrameEstimate(parse_hands(reply, width, height), R)


def parse_hands(reply: dict, width: int, height: int) -> list[Detection]:
    """The worker's JSON reply -> Detections (image landmarks scaled to pixels, side unmirrored)."""
    out = []
    for hand in reply["hands"]:
        image = np.asarray(hand["image"], dtype=np.float64)
        world = np.asarray(hand["world"], dtype=np.float64)
        if image.shape != (N_KEYPOINTS, 3) or world.shape != (N_KEYPOINTS, 3):
            raise ValueError(f"hands estimator reply: landmarks of shape {image.shape}, {world.shape}")
        pixels, depth = image[:, :2] * (width, height), image[:, 2] * width  # MediaPipe: z at x's scale
        out.append(Detection(pixels, depth, world, MIRRORED_LABELS[hand["label"]], float(hand["score"])))
    return out


class MediaPipeHands:
    """MediaPipe Hands (0.10.21, the wheel's full landmark model) in its own interpreter."""

    name = "mediapipe"

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, python: Path | None = None) -> None:  # fmt: skip
        args = [str(python or hands_python()), str(WORKER), "--max-hands", "2",
                "--model-complexity", str(model_complexity),
                "--min-detection-confidence", str(min_detection_confidence),
                "--min-tracking-confidence", str(min_tracking_confidence)]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                      env=env)  # fmt: skip

    def _call(self, payload: bytes) -> dict:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
            proc.stdin.flush()
            (n,) = struct.unpack("<Q", _read_exact(proc.stdout, 8))
            return json.loads(_read_exact(proc.stdout, n))
        except (BrokenPipeError, EOFError) as e:
            raise RuntimeError(f"the MediaPipe hands worker died: {self._tail()}") from e

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self._proc.poll()}"

    def reset(self, K: np.ndarray | None = None) -> None:
        """A new video; with its intrinsics `K` (at the frames' size) the camera rotation is estimated."""
        extra = b"" if K is None else struct.pack("<4d", K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        self._call(b"R" + extra)

    def estimate(self, frame: np.ndarray) -> FrameEstimate:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"estimate wants an RGB frame [H, W, 3], got {frame.shape}")
        h, w, _ = frame.shape
        return parse_reply(self._call(b"F" + struct.pack("<III", h, w, 3) + frame.tobytes()), w, h)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(struct.pack("<Q", 1) + b"Q")  # type: ignore[union-attr]
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def __enter__(self) -> MediaPipeHands:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ESTIMATORS = {"mediapipe": MediaPipeHands}


def open_estimator(name: str, cfg: HandsConfig) -> HandEstimator:
    """A backend by its `--estimator` name with the section's settings; ValueError naming the known ones."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown hands estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](cfg.model_complexity, cfg.min_detection_confidence, cfg.min_tracking_confidence)
