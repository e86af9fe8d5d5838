"""Open X-Embodiment (RLDS TFRecords, read without TensorFlow by ingest/sources/rlds.py): first slice, Bridge.

- A shard is the unit of work: `discover` returns one ref per shard (`<split>/<shard file name>`) of the
  splits in the config; `convert` returns one canonical episode per RLDS record of the shard, with
  `source_episode_id = <split>/<shard>#<record>` (`#<part>` appended if a record is cut at 15 minutes).
- A corrupt record (CRC mismatch, truncation, undecodable Example) rejects the WHOLE shard in this slice:
  `EpisodeError(shard, "record <n>", ...)`; the episodes before it in the shard are not published.
- Per record: the state `[x, y, z, a0, a1, a2, gripper]` (EEF pose in the robot base frame) becomes the
  right side of the canonical vector in the base frame: `T_canonical = T_eef @ T_offset` (`eef_offset`),
  rotation from the Euler angles in the configured convention (`euler_to_matrix`), gripper mapped to
  [0, 1] by `gripper_range` (1 = open) and clipped; keypoints and the left side are absent (masked).
  Native steps are at `i / native_fps`; resampled to 10 Hz (positions and gripper linearly, rotations by
  SLERP, no extrapolation: N steps at 5 Hz give 2N - 1 frames). The canonical action is computed from
  consecutive canonical states (CONTRACT.md section 4; the base frame does not move).
- Kept unchanged beside it, sampled at the source step nearest each 10 Hz frame: `action.native` (the
  source's commanded action) and `observation.native_state` (the raw state). Each camera with images
  becomes `observation.images.<camera>`, encoded frames taken from the record (`VideoSource.images`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.errors import EpisodeError
from ingest.sources.base import SourceEpisodeRef
from ingest.sources.rlds import RecordError, RldsDataset, RldsEpisode, RldsError
from ingest.stages import quality, resample
from ingest.stages.geometry import IDENTITY_6D, rotation_to_6d
from ingest.stages.hands import SideArrays, assemble
from schemas.canonical import SIDE_DIM, Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, EpisodeMeta, ExtraColumn, VideoSource
from schemas.source_config import SourceConfig
from schemas.sources_oxe import OxeConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
SIDE: Side = "right"  # single-arm robots fill the right side (CONTRACT.md section 4)
POS, ROT, GRIP = slice(0, 3), slice(3, 9), slice(9, 10)
_AXES = {"x": 0, "y": 1, "z": 2}


# ------------------------------------------------------------------------------------------ geometry


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Elementary rotations `[N, 3, 3]` by `angle [N]` radians about the base axis `axis` ('x'|'y'|'z')."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    i = _AXES[axis.lower()]
    j, k = (i + 1) % 3, (i + 2) % 3
    R = np.zeros(angle.shape + (3, 3))
    R[..., i, i] = 1.0
    R[..., j, j], R[..., j, k] = c, -s
    R[..., k, j], R[..., k, k] = s, c
    return R


def euler_to_matrix(angles: np.ndarray, convention: str) -> np.ndarray:
    """Euler angles `[N, 3]` (radians, `angles[:, i]` about axis `convention[i]`) -> rotations `[N, 3, 3]`.

    Lower-case `convention` is extrinsic (about the fixed axes, the first applied first):
    `R = R_c2(a2) @ R_c1(a1) @ R_c0(a0)`; Bridge's "xyz" roll-pitch-yaw is `Rz(yaw) @ Ry(pitch) @ Rx(roll)`.
    Upper-case is intrinsic (about the moving axes): `R = R_c0(a0) @ R_c1(a1) @ R_c2(a2)`. Same meaning as
    scipy's `Rotation.from_euler(convention, angles)`.
    """
    angles = np.asarray(angles, dtype=np.float64)
    mats = [axis_rotation(ax, angles[:, i]) for i, ax in enumerate(convention)]
    if convention.islower():
        return mats[2] @ mats[1] @ mats[0]
    return mats[0] @ mats[1] @ mats[2]


def gripper_to_unit(values: np.ndarray, closed: float, opened: float) -> np.ndarray:
    """Source gripper readings -> [0, 1] opening (0 at `closed`, 1 at `opened`), clipped."""
    return np.clip((np.asarray(values, dtype=np.float64) - closed) / (opened - closed), 0.0, 1.0)


def robot_side(pos: np.ndarray, rot: np.ndarray, grip: np.ndarray) -> SideArrays:
    """One side's 73 state/action values in a fixed reference frame from 10 Hz `pos [T, 3]`,
    `rot [T, 3, 3]`, `grip [T]`. Action at t < T-1: `p[t+1] - p[t]`, `R[t]^T R[t+1]` (6D), gripper of
    t+1; last frame: zero motion, identity, same gripper. Keypoints absent: masked, zeros."""
    t = pos.shape[0]
    state, action = np.zeros((t, SIDE_DIM)), np.zeros((t, SIDE_DIM))
    state[:, POS], state[:, ROT], state[:, GRIP] = pos, rotation_to_6d(rot), grip[:, None]
    action[:-1, POS] = pos[1:] - pos[:-1]
    action[:-1, ROT] = rotation_to_6d(np.swapaxes(rot[:-1], -1, -2) @ rot[1:])
    action[:-1, GRIP] = grip[1:, None]
    action[-1, ROT], action[-1, GRIP] = IDENTITY_6D, grip[-1]
    mask = np.zeros((t, SIDE_DIM), dtype=bool)
    mask[:, :10] = True
    return SideArrays(state.astype(np.float32), action.astype(np.float32), mask, mask.copy())


# --------------------------------------------------------------------------------------- per record


@dataclass
class Native:
    """One record's arrays at the source rate (float64) and its canonical right-side pose."""

    state: np.ndarray  # [N, 7] as stored
    action: np.ndarray  # [N, A] as stored
    pos: np.ndarray  # [N, 3] canonical wrist position, base frame
    rot: np.ndarray  # [N, 3, 3]
    grip: np.ndarray  # [N] in [0, 1]


def _steps(ep: RldsEpisode, key: str, width: int | None) -> np.ndarray:
    where = f"record {ep.index}: {key}"
    if key not in ep.steps:
        raise EpisodeError(ep.shard, where, f"missing; the record has {sorted(ep.steps)}")
    arr = np.asarray(ep.steps[key], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or (width is not None and arr.shape[1] != width):
        raise EpisodeError(ep.shard, where, f"expected [steps > 0, {width or 'D'}], got {list(arr.shape)}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise EpisodeError(ep.shard, where, f"non-finite value (NaN/inf) at step {int(np.argmax(bad))}")
    return arr


def canonical_pose(state: np.ndarray, cfg: OxeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position [N, 3], rotation [N, 3, 3], gripper [N]) of the canonical wrist frame, base frame."""
    rot_eef = euler_to_matrix(state[:, 3:6], cfg.euler)
    off_rot = euler_to_matrix(np.asarray([cfg.eef_offset.euler]), cfg.euler)[0]
    pos = state[:, :3] + rot_eef @ np.asarray(cfg.eef_offset.translation)
    grip = gripper_to_unit(state[:, 6], *cfg.gripper_range)
    return pos, rot_eef @ off_rot, grip


def read_native(ep: RldsEpisode, cfg: OxeConfig) -> Native:
    state = _steps(ep, cfg.state_key, 7)
    action = _steps(ep, cfg.action_key, len(cfg.action_names))
    return Native(state, action, *canonical_pose(state, cfg))


def _videos(ep: RldsEpisode, cfg: OxeConfig, nearest: np.ndarray) -> dict[str, VideoSource]:
    videos = {}
    for cam in cfg.cameras:
        frames = ep.images.get(f"steps/observation/{cam}", [])
        if not any(frames):
            continue  # camera absent from this record
        if not all(frames):
            raise EpisodeError(ep.shard, f"record {ep.index}: {cam}", "some steps have no image bytes")
        videos[f"observation.images.{cam}"] = VideoSource(path=ep.shard, frame_indices=nearest, images=frames)
    return videos


def _caption(ep: RldsEpisode, dataset_name: str) -> tuple[str, str, str]:
    """(caption, caption_source, task_original)."""
    text = ep.language_instruction.strip()
    if text:
        return text, "source", ep.language_instruction
    return dataset_name.replace("_", " ").strip(), "template", ""


def _extra(native: Native, nearest: np.ndarray, cfg: OxeConfig) -> dict[str, ExtraColumn]:
    return {
        "action.native": ExtraColumn(native.action[nearest].astype(np.float32), list(cfg.action_names)),
        "observation.native_state": ExtraColumn(
            native.state[nearest].astype(np.float32), list(cfg.state_names)
        ),
    }


@dataclass
class Converted:
    """One record at 10 Hz, before cutting into parts."""

    pos: np.ndarray  # [T, 3]
    rot: np.ndarray  # [T, 3, 3]
    grip: np.ndarray  # [T]
    nearest: np.ndarray  # int64 [T], the source step nearest each 10 Hz frame
    extra: dict[str, ExtraColumn]
    videos: dict[str, VideoSource]


def to_10hz(ep: RldsEpisode, cfg: OxeConfig) -> Converted:
    native = read_native(ep, cfg)
    plan = resample.make_plan(np.arange(native.state.shape[0]) / cfg.native_fps)
    pos = resample.resample_linear(plan, native.pos)
    rot = resample.resample_rotations(plan, native.rot)
    grip = resample.resample_linear(plan, native.grip)
    nearest = plan.nearest
    extra, videos = _extra(native, nearest, cfg), _videos(ep, cfg, nearest)
    return Converted(pos, rot, grip, nearest, extra, videos)


def _part(conv: Converted, rows: slice) -> tuple[SideArrays, dict[str, ExtraColumn], dict[str, VideoSource]]:
    """Frames `rows` of a record; a cut part ends with the contract's last-frame action."""
    side = robot_side(conv.pos[rows], conv.rot[rows], conv.grip[rows])
    arrays = assemble({SIDE: side}, side.state.shape[0])
    extra = {k: ExtraColumn(c.values[rows], c.names) for k, c in conv.extra.items()}
    videos = {k: VideoSource(v.path, v.frame_indices[rows], v.images) for k, v in conv.videos.items()}
    return arrays, extra, videos


def convert_record(ep: RldsEpisode, ep_id: str, dataset_name: str, cfg: OxeConfig) -> list[CanonicalEpisode]:
    """The canonical episode(s) of one RLDS record (several only past 15 minutes)."""
    conv = to_10hz(ep, cfg)
    text = _caption(ep, dataset_name)
    ranges = resample.chunk_ranges(len(conv.nearest), MAX_FRAMES)
    out = []
    for part, (start, stop) in enumerate(ranges):
        arrays, extra, videos = _part(conv, slice(start, stop))
        tier, metrics = quality.assess(
            arrays.state_mask, arrays.action, arrays.action_mask, [SIDE], cfg.quality
        )
        metrics.update(quality.robot_signals(arrays.state, arrays.state_mask, [SIDE]))
        meta = EpisodeMeta(
            source_episode_id=ep_id if len(ranges) == 1 else f"{ep_id}#{part}", embodiment=cfg.embodiment,
            has_action=True, quality_tier=tier, quality_metrics=metrics, caption=text[0],
            caption_source=text[1], task_original=text[2],
        )  # fmt: skip
        episode = CanonicalEpisode(
            meta=meta, state=arrays.state, action=arrays.action, state_mask=arrays.state_mask,
            action_mask=arrays.action_mask, videos=videos, extra=extra,
        )  # fmt: skip
        episode.check()
        out.append(episode)
    return out


# ------------------------------------------------------------------------------------------- shards


def iter_shard(ds: RldsDataset, shard: Path) -> Iterator[RldsEpisode]:
    """The records of a shard; a bad record becomes `EpisodeError(shard, "record <n>", ...)`."""
    n = 0
    try:
        for ep in ds.iter_episodes(shard):
            yield ep
            n += 1
    except RecordError as e:
        msg = str(e).removeprefix(f"{e.path}: record {e.record} at ")
        raise EpisodeError(shard, f"record {e.record}", msg, stage="read") from e
    except RldsError as e:
        msg = str(e).removeprefix(f"{shard}: ").removeprefix(f"record {n}: ")
        raise EpisodeError(shard, f"record {n}", msg, stage="read") from e


def _open(root: Path) -> RldsDataset:
    try:
        return RldsDataset.open(root)
    except RldsError as e:
        raise EpisodeError(root, "dataset", str(e), stage="read") from e


class OxeSource:
    """The Open X-Embodiment `Source` (ingest/sources/base.py)."""

    name = "oxe"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        cfg = _config(cfg)
        root = Path(root).resolve()
        ds = RldsDataset.open(root)  # a bad dataset folder is a clear refusal of the whole run
        refs = []
        for split in cfg.splits:
            for shard in ds.shards(split):
                files = {"shard": str(shard), "dataset": str(root)}
                refs.append(SourceEpisodeRef(source_episode_id=f"{split}/{shard.name}", files=files))
        return refs

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        cfg = _config(cfg)
        ds, shard = _open(Path(ref.files["dataset"])), Path(ref.files["shard"])
        if not shard.is_file():
            raise EpisodeError(shard, "shard", "file missing", stage="read")
        episodes: list[CanonicalEpisode] = []
        for ep in iter_shard(ds, shard):
            ep_id = f"{ref.source_episode_id}#{ep.index}"
            episodes += convert_record(ep, ep_id, ds.info.name, cfg)
        return episodes


def _config(cfg: SourceConfig) -> OxeConfig:
    if not isinstance(cfg, OxeConfig):
        raise TypeError(f"oxe needs an OxeConfig, got {type(cfg).__name__}")
    return cfg


SOURCE = OxeSource()
