"""Open X-Embodiment (RLDS TFRecords, read without TensorFlow by ingest/sources/rlds.py): one generic reader,
configured per dataset by a `pipelines.yaml` key mapping (schemas/sources_oxe.py). Bridge (`oxe`), RT-1
(`oxe_fractal`) and DROID (`oxe_droid`) are sections of it, not code paths.

- A shard is the unit of work: `discover` checks the mapping against `features.json` (an unknown or
  ill-shaped key refuses the run, naming key and dataset) and returns one ref per shard
  (`<split>/<shard file name>`) of the configured splits. `convert` returns one canonical episode per RLDS
  record, `source_episode_id = <split>/<shard>#<record>` (`#<part>` appended if a record is cut at 15
  minutes).
- A bad record (CRC mismatch, truncation, undecodable Example, non-finite or missing values) is a
  `PartReject` named `<split>/<shard>#<record>` (EpisodeError on the shard, field `record <n>`), and the
  shard's other records are still converted. Past a lost framing (bad length CRC, truncation) nothing can
  be located: each record `dataset_info.json` lists after it is a reject of its own.
- Per record: the mapped EEF pose (base frame) becomes the right side of the canonical vector,
  `T_canonical = T_eef @ T_offset`; the gripper maps to [0, 1] (1 = open) by `gripper_range`, clipped;
  keypoints and the left side are absent (masked). Without a pose (joint-only robot) the wrist stays
  masked. Native steps are at `i / native_fps`, resampled to 10 Hz (ingest/convert/resample.py: positions
  and gripper linearly, rotations by SLERP, no extrapolation), so 3 Hz and 5 Hz sources are upsampled and
  15 Hz ones downsampled the same way. The canonical action comes from consecutive canonical states
  (CONTRACT.md section 4; the base frame does not move).
- Kept beside it: `action.native` (the mapped commanded action, unchanged) and `observation.native_state`
  at the source step nearest each 10 Hz frame, `observation.joints` interpolated linearly. Each mapped
  camera the record has becomes `observation.images.<last key part>` (encoded frames from the record): a
  camera is absent where its `camera_flags` presence flag is false (Bridge: `has_image_N`), or, without
  a flag, where its frames are empty or all black. The writer publishes a camera only if every episode
  of the dataset has it (features identical for every episode).
- Caption: the first non-empty text of the mapped instruction features, else a template from the dataset
  name. `quality_metrics["success"]` (1.0 / 0.0) only where the mapping names a success signal and the
  record has a value for it; every part of a cut record carries the record's flag.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.convert import hands, resample
from ingest.convert.geometry import values_to_rotation
from ingest.convert.robot import eef_poses, gripper_to_unit, offset_transform, robot_side
from ingest.errors import EpisodeError
from ingest.sources.base import PartReject, SourceEpisodeRef, assemble_episode, parse_field
from ingest.sources.rlds import FeatureSpec, PayloadError, RecordError, RldsDataset, RldsEpisode, RldsError
from schemas.canonical import Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, ExtraColumn, VideoSource
from schemas.source_config import SourceConfig
from schemas.sources_oxe import NamedField, OxeConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
SIDE: Side = "right"  # single-arm robots fill the right side (CONTRACT.md section 4)


# ------------------------------------------------------------------------------ the mapping vs features


def field_width(spec: str, feature: FeatureSpec) -> int:
    _, sl = parse_field(spec)
    return feature.size if sl is None else sl.stop - sl.start


def field_names(nf: NamedField, feature: FeatureSpec) -> list[str]:
    """The names of a kept field: the mapping's, else `<last key part>.<i>` (the part alone for one value)."""
    if nf.names is not None:
        return list(nf.names)
    key, sl = parse_field(nf.key)
    leaf = key.rsplit("/", 1)[-1]
    idx = range(feature.size) if sl is None else range(sl.start, sl.stop)
    return [leaf] if feature.size == 1 else [f"{leaf}.{i}" for i in idx]


def _unknown(key: str, features: dict[str, FeatureSpec]) -> str:
    close = difflib.get_close_matches(key, features, n=3, cutoff=0.6)
    return f"{key}: unknown key" + (f" (did you mean {', '.join(close)}?)" if close else "")


def _numeric_problem(spec: str, what: str, width: int | None, features: dict[str, FeatureSpec]) -> str | None:
    key, sl = parse_field(spec)
    feature = features.get(key)
    if feature is None:
        return _unknown(key, features)
    if feature.kind != "tensor" or not feature.per_step:
        where = "per-step" if feature.per_step else "episode-level"
        return f"{key}: {what} needs per-step numbers, features.json has an {where} {feature.kind}"
    if sl is not None and not 0 <= sl.start < sl.stop <= feature.size:
        return f"{spec}: slice outside the {feature.size} values of {key}"
    if width is not None and field_width(spec, feature) != width:
        return f"{spec}: {what} needs {width} value(s), the field has {field_width(spec, feature)}"
    return None


def _kept_problems(fields: list[NamedField], what: str, features: dict[str, FeatureSpec]) -> list[str]:
    out = []
    for nf in fields:
        if problem := _numeric_problem(nf.key, what, None, features):
            out.append(problem)
            continue
        width = field_width(nf.key, features[parse_field(nf.key)[0]])
        if nf.names is not None and len(nf.names) != width:
            out.append(f"{nf.key}: {len(nf.names)} names for {width} values")
    return out


def _kind_problems(keys: list[str], kind: str, features: dict[str, FeatureSpec]) -> list[str]:
    """Text features anywhere, image features per step."""
    out = []
    for key in keys:
        feature = features.get(key)
        if feature is None:
            out.append(_unknown(key, features))
        elif feature.kind != kind or (kind == "image" and not feature.per_step):
            out.append(f"{key}: expected {kind}, features.json has {feature.kind}")
    return out


def _success_problems(cfg: OxeConfig, features: dict[str, FeatureSpec]) -> list[str]:
    sig = cfg.success
    if sig is None:
        return []
    feature = features.get(sig.key)
    if feature is None:
        return [_unknown(sig.key, features)]
    if feature.kind == "text" and sig.success_pattern is None and sig.failure_pattern is None:
        return [f"{sig.key}: a text success signal needs success_pattern and/or failure_pattern"]
    if feature.kind == "image" or (feature.kind == "tensor" and feature.size != 1):
        return [f"{sig.key}: a success signal is one number or a text, not {feature.kind} {feature.shape}"]
    return []


def _flag_problems(cfg: OxeConfig, features: dict[str, FeatureSpec]) -> list[str]:
    out = []
    for camera, key in cfg.camera_flags.items():
        feature = features.get(key)
        if feature is None:
            out.append(_unknown(key, features))
        elif feature.kind != "tensor" or feature.size != 1:
            out.append(f"{key}: the presence flag of {camera} is one number, not {feature.kind}")
    return out


def mapping_problems(cfg: OxeConfig, features: dict[str, FeatureSpec]) -> list[str]:
    """Every key of the section that `features.json` does not have, or has in the wrong kind or shape."""
    rot_width = 3 if cfg.rotation_convention == "euler" else 4
    pose = [(cfg.position, "position", 3), (cfg.rotation, "rotation", rot_width), (cfg.gripper, "gripper", 1)]
    out = [
        p for spec, what, w in pose if spec is not None and (p := _numeric_problem(spec, what, w, features))
    ]
    out += _kept_problems(cfg.native_action, "native_action", features)
    out += _kept_problems(cfg.native_state, "native_state", features)
    out += _kept_problems(cfg.joints, "joints", features)
    out += _kind_problems(cfg.instructions, "text", features)
    out += _kind_problems(cfg.cameras or [], "image", features)
    names = [k.rsplit("/", 1)[-1] for k in cfg.cameras or []]
    out += [f"cameras: two cameras named {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    return out + _flag_problems(cfg, features) + _success_problems(cfg, features)


def check_mapping(ds: RldsDataset, cfg: OxeConfig) -> None:
    """Refuse a section whose keys do not fit the dataset, naming every bad key and the dataset."""
    problems = mapping_problems(cfg, ds.features)
    if problems:
        msg = f"the pipelines.yaml mapping does not fit dataset {ds.info.name!r}: " + "; ".join(problems)
        raise EpisodeError(ds.root / "features.json", "mapping", msg, stage="discover")


# --------------------------------------------------------------------------------------- per record


def _where(ep: RldsEpisode, key: str) -> str:
    return f"record {ep.index}: {key}"


def read_field(ep: RldsEpisode, spec: str) -> np.ndarray:
    """A per-step numeric field as float64 `[T, D]`; non-finite values are a named error."""
    key, sl = parse_field(spec)
    if key not in ep.steps:
        raise EpisodeError(ep.shard, _where(ep, key), "missing from the record")
    arr = np.asarray(ep.steps[key], dtype=np.float64).reshape(ep.num_steps, -1)
    arr = arr if sl is None else arr[:, sl]
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise EpisodeError(
            ep.shard, _where(ep, key), f"non-finite value (NaN/inf) at step {int(np.argmax(bad))}"
        )
    return arr


def to_rotation(values: np.ndarray, cfg: OxeConfig, ep: RldsEpisode) -> np.ndarray:
    """Source rotation values `[N, 3|4]` in the section's convention -> `[N, 3, 3]`."""
    try:
        return values_to_rotation(values, cfg.rotation_convention, cfg.euler_order, unit="step")
    except ValueError as e:
        raise EpisodeError(ep.shard, _where(ep, str(cfg.rotation)), str(e)) from e


def read_pose(ep: RldsEpisode, cfg: OxeConfig) -> np.ndarray | None:
    """`[N, 4, 4]` pose of the canonical wrist frame in the base frame (`T_eef @ T_offset`), or None."""
    if cfg.position is None or cfg.rotation is None:
        return None
    R = to_rotation(read_field(ep, cfg.rotation), cfg, ep)
    offset = offset_transform(cfg.eef_offset.quat_wxyz, cfg.eef_offset.translation)
    return eef_poses(R, read_field(ep, cfg.position), offset)


def read_gripper(ep: RldsEpisode, cfg: OxeConfig) -> np.ndarray | None:
    """The gripper opening in [0, 1] (1 = open), or None."""
    if cfg.gripper is None:
        return None
    return gripper_to_unit(read_field(ep, cfg.gripper)[:, 0], *cfg.gripper_range)


def _kept(ep: RldsEpisode, fields: list[NamedField], features: dict[str, FeatureSpec]) -> ExtraColumn | None:
    if not fields:
        return None
    values = np.concatenate([read_field(ep, nf.key) for nf in fields], axis=1)
    names = [n for nf in fields for n in field_names(nf, features[parse_field(nf.key)[0]])]
    return ExtraColumn(values, names)


def _extra(
    ep: RldsEpisode, cfg: OxeConfig, features: dict[str, FeatureSpec], plan: resample.ResamplePlan
) -> dict[str, ExtraColumn]:
    """The source's own values: nearest step for action and state, linear for joints."""
    out = {}
    for name, fields in (
        ("action.native", cfg.native_action),
        ("observation.native_state", cfg.native_state),
    ):
        if (col := _kept(ep, fields, features)) is not None:
            out[name] = ExtraColumn(col.values[plan.nearest].astype(np.float32), col.names)
    if (col := _kept(ep, cfg.joints, features)) is not None:
        out["observation.joints"] = ExtraColumn(
            resample.resample_linear(plan, col.values).astype(np.float32), col.names
        )
    return out


BLACK_LEVEL = 3  # a frame whose brightest value is at most this is black (JPEG noise stays below it)


def all_black(frames: list[bytes]) -> bool:
    """Every encoded frame decodes to black (Bridge's placeholder for a camera it did not record)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return all(max(Image.open(io.BytesIO(b)).convert("L").getextrema()) <= BLACK_LEVEL for b in frames)
    except (UnidentifiedImageError, OSError):
        return False  # the video stage names an undecodable frame


def camera_present(ep: RldsEpisode, cfg: OxeConfig, key: str) -> bool:
    """The record has this camera: its presence flag is true (at some step), else its frames are neither
    empty nor all black."""
    frames = ep.images.get(key, [])
    flag = cfg.camera_flags.get(key)
    if flag is not None:
        value = ep.steps[flag] if flag in ep.steps else ep.episode_metadata.get(flag, False)
        return bool(np.asarray(value, dtype=np.float64).any()) and any(frames)
    return any(frames) and not all_black([b for b in frames if b])


def _videos(ep: RldsEpisode, cfg: OxeConfig, nearest: np.ndarray) -> dict[str, VideoSource]:
    videos = {}
    for key in cfg.cameras if cfg.cameras is not None else list(ep.images):
        frames = ep.images.get(key, [])
        if not camera_present(ep, cfg, key):
            continue  # camera absent from this record
        if not all(frames):
            raise EpisodeError(ep.shard, _where(ep, key), "some steps have no image bytes")
        name = f"observation.images.{key.rsplit('/', 1)[-1]}"
        videos[name] = VideoSource(path=ep.shard, frame_indices=nearest, images=frames)
    return videos


def _texts(ep: RldsEpisode, key: str) -> list[str]:
    value = ep.steps[key] if key in ep.steps else ep.episode_metadata.get(key, [])
    return [value] if isinstance(value, str) else [str(v) for v in value]


def caption(ep: RldsEpisode, cfg: OxeConfig, dataset_name: str) -> tuple[str, str, str]:
    """(caption, caption_source, task_original): the first non-empty mapped instruction, else a template."""
    for key in cfg.instructions:
        for text in _texts(ep, key):
            if text.strip():
                return text.strip(), "source", text
    return dataset_name.replace("_", " ").strip(), "template", ""


def success_flag(ep: RldsEpisode, cfg: OxeConfig) -> float | None:
    """1.0 / 0.0 from the mapped success signal; None where the section or the record has none."""
    sig = cfg.success
    if sig is None:
        return None
    value = ep.steps[sig.key][-1] if sig.key in ep.steps else ep.episode_metadata.get(sig.key)
    if isinstance(value, str):
        if sig.success_pattern is not None and re.search(sig.success_pattern, value):
            return 1.0
        if sig.failure_pattern is not None and re.search(sig.failure_pattern, value):
            return 0.0
        return None
    return None if value is None else float(float(np.asarray(value).ravel()[0]) > 0.5)


@dataclass
class Converted:
    """One record at 10 Hz, before cutting into parts."""

    pose: np.ndarray | None  # [T, 4, 4]
    grip: np.ndarray | None  # [T]
    length: int
    extra: dict[str, ExtraColumn]
    videos: dict[str, VideoSource]


def to_10hz(ep: RldsEpisode, cfg: OxeConfig, features: dict[str, FeatureSpec]) -> Converted:
    if ep.num_steps == 0:
        raise EpisodeError(ep.shard, f"record {ep.index}", "zero steps")
    plan = resample.make_plan(np.arange(ep.num_steps) / cfg.native_fps)
    pose, grip = read_pose(ep, cfg), read_gripper(ep, cfg)
    pose = None if pose is None else resample.resample_poses(plan, pose)
    grip = None if grip is None else resample.resample_linear(plan, grip)
    extra, videos = _extra(ep, cfg, features, plan), _videos(ep, cfg, plan.nearest)
    return Converted(pose, grip, plan.length, extra, videos)


def _rows(a: np.ndarray | None, rows: slice) -> np.ndarray | None:
    return None if a is None else a[rows]


def _part(
    conv: Converted, rows: slice
) -> tuple[hands.SideArrays, dict[str, ExtraColumn], dict[str, VideoSource]]:
    """Frames `rows` of a record; a cut part ends with the contract's last-frame action."""
    t = rows.stop - rows.start
    side = robot_side(_rows(conv.pose, rows), _rows(conv.grip, rows), t)
    arrays = hands.assemble({SIDE: side}, t)
    extra = {k: ExtraColumn(c.values[rows], c.names) for k, c in conv.extra.items()}
    videos = {k: VideoSource(v.path, v.frame_indices[rows], v.images) for k, v in conv.videos.items()}
    return arrays, extra, videos


def convert_record(
    ep: RldsEpisode, ep_id: str, dataset_name: str, cfg: OxeConfig, features: dict[str, FeatureSpec]
) -> list[CanonicalEpisode]:
    """The canonical episode(s) of one RLDS record (several only past 15 minutes)."""
    conv = to_10hz(ep, cfg, features)
    text, success = caption(ep, cfg, dataset_name), success_flag(ep, cfg)
    ranges = resample.chunk_ranges(conv.length, MAX_FRAMES)
    out = []
    for part, (start, stop) in enumerate(ranges):
        arrays, extra, videos = _part(conv, slice(start, stop))
        part_id = ep_id if len(ranges) == 1 else f"{ep_id}#{part}"
        metrics = {} if success is None else {"success": success}
        out.append(
            assemble_episode(part_id, cfg, arrays, text, quality_metrics=metrics, videos=videos, extra=extra)
        )
    return out


# ------------------------------------------------------------------------------------------- shards


def record_reject(e: RecordError) -> EpisodeError:
    """A record the reader could not decode, as the EpisodeError of its shard, field `record <n>`."""
    msg = str(e).removeprefix(f"{e.path}: record {e.record} at ")
    return EpisodeError(e.path, f"record {e.record}", msg, stage="read")


def _convert_or_reject(
    item: RldsEpisode | RecordError, ep_id: str, ds: RldsDataset, cfg: OxeConfig
) -> list[CanonicalEpisode | PartReject]:
    if isinstance(item, RecordError):
        return [PartReject(ep_id, record_reject(item))]
    try:
        return list(convert_record(item, ep_id, ds.info.name, cfg, ds.features))
    except EpisodeError as e:
        return [PartReject(ep_id, e)]
    except ValueError as e:  # a contract check of the built episode (CanonicalEpisode.check)
        return [PartReject(ep_id, EpisodeError(item.shard, f"record {item.index}", str(e)))]


def _expected_records(ds: RldsDataset, split: str, shard: Path) -> int:
    """Records `dataset_info.json` lists for `shard` (0 when it does not say)."""
    lengths = ds.splits[split].shard_lengths
    names = [p.name for p in ds.shards(split)]
    return lengths[names.index(shard.name)] if shard.name in names and len(lengths) == len(names) else 0


def _unread(
    ref: SourceEpisodeRef, shard: Path, seen: int, expected: int, lost: RecordError | None
) -> list[PartReject]:
    """A reject for each record `dataset_info.json` lists that the shard did not give."""
    why = (
        f"unreadable: the framing is lost at record {lost.record}" if lost is not None
        else f"missing: the shard ends after {seen} records"
    ) + f" (dataset_info.json lists {expected})"  # fmt: skip
    return [
        PartReject(f"{ref.source_episode_id}#{i}", EpisodeError(shard, f"record {i}", why, stage="read"))
        for i in range(seen, expected)
    ]


def convert_shard(
    ref: SourceEpisodeRef, ds: RldsDataset, cfg: OxeConfig
) -> Iterator[CanonicalEpisode | PartReject]:
    shard, split = Path(ref.files["shard"]), ref.source_episode_id.split("/", 1)[0]
    seen, last = 0, None
    for item in ds.scan_episodes(shard):
        yield from _convert_or_reject(item, f"{ref.source_episode_id}#{seen}", ds, cfg)
        seen, last = seen + 1, item
    lost = last if isinstance(last, RecordError) and not isinstance(last, PayloadError) else None
    yield from _unread(ref, shard, seen, _expected_records(ds, split, shard), lost)


def _open(root: Path) -> RldsDataset:
    try:
        return RldsDataset.open(root)
    except RldsError as e:
        raise EpisodeError(root, "dataset", str(e), stage="read") from e


class OxeSource:
    """The Open X-Embodiment `Source` (ingest/sources/base.py)."""

    name = "oxe"
    requires = ("crc32c", "google.protobuf", "PIL", "av")  # imported lazily: checked on the driver first
    layout = "an RLDS dataset folder (dataset_info.json, features.json, <name>-<split>.tfrecord-* shards)"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        cfg = _config(cfg)
        root = Path(root).resolve()
        ds = RldsDataset.open(root)  # a bad dataset folder is a clear refusal of the whole run
        check_mapping(ds, cfg)  # so is a mapping that does not fit it
        refs = []
        for split in cfg.splits:
            for shard in ds.shards(split):
                files = {"shard": str(shard), "dataset": str(root)}
                refs.append(SourceEpisodeRef(source_episode_id=f"{split}/{shard.name}", files=files))
        return refs

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode | PartReject]:
        cfg = _config(cfg)
        ds, shard = _open(Path(ref.files["dataset"])), Path(ref.files["shard"])
        if not shard.is_file():
            raise EpisodeError(shard, "shard", "file missing", stage="read")
        check_mapping(ds, cfg)
        return list(convert_shard(ref, ds, cfg))


def _config(cfg: SourceConfig) -> OxeConfig:
    if not isinstance(cfg, OxeConfig):
        raise TypeError(f"oxe needs an OxeConfig, got {type(cfg).__name__}")
    return cfg


SOURCE = OxeSource()
