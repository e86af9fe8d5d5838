"""Read TFDS/RLDS directories without TensorFlow (source-formats.md section 2).

Layers, bottom up:
- TFRecord framing (`scan_records`, `iter_records`): u64 length, masked CRC32C of the length, payload,
  masked CRC32C of the payload; both CRCs are verified. Records are read one by one from a buffered file.
  A record with a bad payload CRC can be skipped (its length is trusted); a bad length CRC or a truncation
  loses the framing, so nothing after it can be read.
- `tf.train.Example` parsing with `protobuf`: the Example/Features/Feature/*List messages are declared here
  (same wire format as TensorFlow's `example.proto`) in a private descriptor pool, so nothing clashes with a
  TensorFlow that may be imported in the same process.
- `features.json` / `dataset_info.json` (pydantic) and un-flattening of the `steps/*` keys: one record is
  one episode whose per-step features hold all T steps concatenated; T = flattened length / per-step size.
- `RldsDataset.scan_episodes` yields each record decoded, or its `RecordError` (file, record number, byte
  offset, reason) in its place, so that one bad record does not cost the rest of its shard.
- Images stay encoded bytes per step; `decode_image` sniffs JPEG/PNG magic bytes (Pillow, else PyAV).
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


class RldsError(ValueError):
    """A TFDS/RLDS directory or episode that cannot be read (names the file)."""


class RecordError(RldsError):
    """A bad TFRecord record: CRC mismatch, truncation or an undecodable Example. Names the file, record
    number and byte offset."""

    def __init__(self, path: Path | str, record: int, offset: int, message: str) -> None:
        self.path, self.record, self.offset = str(path), record, offset
        super().__init__(f"{path}: record {record} at byte offset {offset}: {message}")


# ----------------------------------------------------------------------------------------------- CRC32C


@cache
def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


def crc32c_py(data: bytes) -> int:
    """Table-driven pure-Python CRC32C (Castagnoli); the fallback when the `crc32c` package is absent."""
    table, crc = _crc_table(), 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - exercised only without the package
    _crc32c = crc32c_py


def masked_crc32c(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------- TFRecord framing


def _read_exact(f: BinaryIO, n: int, path: Path, record: int, offset: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise RecordError(path, record, offset, f"truncated {what}: expected {n} bytes, got {len(data)}")
    return data


def _read_record(f: BinaryIO, path: Path, record: int, offset: int, verify: bool) -> tuple[int, bytes] | None:
    """(bytes the record takes on disk, its payload); None at the end of the file. A payload CRC mismatch
    raises `PayloadError` (the framing is intact: reading can go on after it); a bad header or truncation
    raises `RecordError` (nothing after it can be located)."""
    head = f.read(_HEADER.size)
    if not head:
        return None
    if len(head) != _HEADER.size:
        raise RecordError(path, record, offset, f"truncated header: {len(head)} of {_HEADER.size} bytes")
    length, length_crc = _HEADER.unpack(head)
    if verify and masked_crc32c(head[:8]) != length_crc:
        raise RecordError(path, record, offset, "length CRC32C mismatch (corrupt record header)")
    payload = _read_exact(f, length, path, record, offset, "payload")
    (payload_crc,) = _FOOTER.unpack(_read_exact(f, _FOOTER.size, path, record, offset, "payload CRC"))
    size = _HEADER.size + length + _FOOTER.size
    if verify and masked_crc32c(payload) != payload_crc:
        raise PayloadError(path, record, offset, "payload CRC32C mismatch (corrupt record data)", size)
    return size, payload


class PayloadError(RecordError):
    """A record whose payload is bad but whose framing is intact: the next record starts `size` bytes on."""

    def __init__(self, path: Path | str, record: int, offset: int, message: str, size: int) -> None:
        super().__init__(path, record, offset, message)
        self.size = size


def scan_records(path: Path | str, verify: bool = True) -> Iterator[tuple[int, int, bytes | RecordError]]:
    """`(record number, byte offset, payload)` of each record of a TFRecord file, lazily. A record whose
    payload fails its CRC comes as its `RecordError` and the scan goes on; a lost framing (bad length CRC,
    truncation) comes as its `RecordError` and ends the scan."""
    path = Path(path)
    with path.open("rb", buffering=1 << 20) as f:
        record, offset = 0, 0
        while True:
            try:
                got = _read_record(f, path, record, offset, verify)
            except PayloadError as e:
                yield record, offset, e
                record, offset = record + 1, offset + e.size
                continue
            except RecordError as e:
                yield record, offset, e
                return
            if got is None:
                return
            yield record, offset, got[1]
            record, offset = record + 1, offset + got[0]


def iter_records(path: Path | str, verify: bool = True) -> Iterator[bytes]:
    """The payloads of a TFRecord file, lazily, each CRC-checked unless `verify` is False; the first bad
    record raises its `RecordError`."""
    for _, _, item in scan_records(path, verify):
        if isinstance(item, RecordError):
            raise item
        yield item


def frame_record(payload: bytes) -> bytes:
    """One TFRecord record around `payload` (the writer side of the framing)."""
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


# ---------------------------------------------------------------------------------- tf.train.Example


_PKG = "ei_forge.rlds"


def _example_file() -> Any:
    """example.proto + feature.proto (package renamed) as a FileDescriptorProto."""
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="ei_forge/rlds_example.proto", package=_PKG, syntax="proto3")

    def message_field(msg: Any, name: str, number: int, type_name: str, repeated: bool = False) -> Any:
        label = fdp.LABEL_REPEATED if repeated else fdp.LABEL_OPTIONAL
        return msg.field.add(
            name=name, number=number, type=fdp.TYPE_MESSAGE, label=label, type_name=type_name
        )

    for name, ftype in (
        ("BytesList", fdp.TYPE_BYTES),
        ("FloatList", fdp.TYPE_FLOAT),
        ("Int64List", fdp.TYPE_INT64),
    ):
        f.message_type.add(name=name).field.add(name="value", number=1, type=ftype, label=fdp.LABEL_REPEATED)
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    kinds = (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List"))
    for number, (name, list_type) in enumerate(kinds, start=1):
        message_field(feature, name, number, f".{_PKG}.{list_type}").oneof_index = 0
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry", options={"map_entry": True})
    entry.field.add(name="key", number=1, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    message_field(entry, "value", 2, f".{_PKG}.Feature")
    message_field(features, "feature", 1, f".{_PKG}.Features.FeatureEntry", repeated=True)
    message_field(f.message_type.add(name="Example"), "features", 1, f".{_PKG}.Features")
    return f


@cache
def _example_class() -> type:
    """`Example` from a private pool, wire-compatible with tensorflow/core/example/{example,feature}.proto;
    a private pool cannot clash with TensorFlow's `tensorflow.Example` if both are imported."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(_example_file().SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.Example"))


RawValue = list[bytes] | np.ndarray


def parse_example(payload: bytes) -> dict[str, RawValue]:
    """Flat feature map of one serialized `tf.train.Example`: bytes lists as `list[bytes]`, floats as
    float32 arrays, int64s as int64 arrays. An empty Feature comes back as an empty float32 array."""
    example = _example_class()()
    example.ParseFromString(payload)
    out: dict[str, RawValue] = {}
    for key, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind == "bytes_list":
            out[key] = list(feat.bytes_list.value)
        elif kind == "int64_list":
            out[key] = np.array(feat.int64_list.value, dtype=np.int64)
        else:
            out[key] = np.array(feat.float_list.value if kind else [], dtype=np.float32)
    return out


# ------------------------------------------------------------------------- features.json / dataset_info


class _Shape(BaseModel):
    dimensions: list[int] = Field(default_factory=list)  # strings on disk; -1 = unknown


class _TensorInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    shape: _Shape = Field(default_factory=_Shape)
    dtype: str = "float32"
    encoding: str = "none"


class _ImageInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    shape: _Shape = Field(default_factory=_Shape)
    dtype: str = "uint8"
    encodingFormat: str | None = None  # absent in several Google-converted sets: sniff the bytes


class _Node(BaseModel):
    """One node of a TFDS features.json tree."""

    model_config = ConfigDict(extra="ignore")
    pythonClassName: str = ""
    featuresDict: _FeaturesDict | None = None
    sequence: _Sequence | None = None
    tensor: _TensorInfo | None = None
    image: _ImageInfo | None = None
    text: dict[str, Any] | None = None
    description: str = ""


class _FeaturesDict(BaseModel):
    features: dict[str, _Node] = Field(default_factory=dict)


class _Sequence(BaseModel):
    feature: _Node
    length: int = -1


_Node.model_rebuild()


Kind = Literal["tensor", "image", "text"]


class FeatureSpec(BaseModel):
    """One leaf of features.json under its flattened record key (e.g. `steps/observation/state`)."""

    model_config = ConfigDict(frozen=True)
    key: str
    kind: Kind
    shape: tuple[int, ...]  # per step for step features; () for scalars and text
    dtype: str
    per_step: bool
    encoding: str | None = None  # images: "jpeg" / "png" / None when the schema does not say
    description: str = ""

    @property
    def size(self) -> int:
        """Values per step (images and text: one entry per step)."""
        return 1 if self.kind != "tensor" else math.prod(self.shape)


def _leaf(key: str, node: _Node, per_step: bool) -> FeatureSpec:
    common = {"key": key, "per_step": per_step, "description": node.description}
    if node.image is not None:
        info = node.image
        shape = tuple(info.shape.dimensions)
        return FeatureSpec(
            kind="image", shape=shape, dtype=info.dtype, encoding=info.encodingFormat, **common
        )
    if node.text is not None:
        return FeatureSpec(kind="text", shape=(), dtype="string", **common)
    if node.tensor is not None and node.tensor.dtype == "string" and not node.tensor.shape.dimensions:
        # many OXE sets (DROID, RT-1, jaco_play, ...) declare text as a scalar string Tensor, not Text
        return FeatureSpec(kind="text", shape=(), dtype="string", **common)
    if node.tensor is not None:
        info = node.tensor
        if -1 in info.shape.dimensions:
            raise RldsError(
                f"feature {key!r}: unknown dimension in shape {info.shape.dimensions} is not supported"
            )
        return FeatureSpec(kind="tensor", shape=tuple(info.shape.dimensions), dtype=info.dtype, **common)
    raise RldsError(f"feature {key!r}: unsupported TFDS feature {node.pythonClassName or 'without a class'}")


def _walk(node: _Node, prefix: str, per_step: bool) -> list[FeatureSpec]:
    if node.featuresDict is not None:
        return [
            spec
            for name, child in node.featuresDict.features.items()
            for spec in _walk(child, f"{prefix}/{name}" if prefix else name, per_step)
        ]
    if node.sequence is not None:
        if per_step:
            raise RldsError(f"feature {prefix!r}: nested sequences (ragged features) are not supported")
        return _walk(node.sequence.feature, prefix, per_step=True)
    return [_leaf(prefix, node, per_step)]


def load_features(path: Path) -> dict[str, FeatureSpec]:
    """The leaves of `features.json`, keyed by flattened record key, in file order."""
    if not path.is_file():
        raise RldsError(f"{path}: features.json is missing; cannot decode RLDS records without it")
    try:
        root = _Node.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise RldsError(f"{path}: not a TFDS features.json: {exc}") from exc
    if root.featuresDict is None:
        raise RldsError(f"{path}: no top-level featuresDict")
    return {spec.key: spec for spec in _walk(root, "", per_step=False)}


class SplitInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str
    shard_lengths: list[int] = Field(default_factory=list, alias="shardLengths")  # strings on disk
    num_bytes: int = Field(0, alias="numBytes")
    filepath_template: str = Field("{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", alias="filepathTemplate")


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str
    version: str = ""
    file_format: str = Field("tfrecord", alias="fileFormat")
    splits: list[SplitInfo] = Field(default_factory=list)


def load_dataset_info(path: Path) -> DatasetInfo:
    if not path.is_file():
        raise RldsError(f"{path}: dataset_info.json is missing; cannot list splits and shards without it")
    try:
        return DatasetInfo.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise RldsError(f"{path}: not a TFDS dataset_info.json: {exc}") from exc


# ---------------------------------------------------------------------------------------- un-flattening


_INSTRUCTION_KEYS = ("steps/language_instruction", "steps/observation/natural_language_instruction")


@dataclass
class RldsEpisode:
    """One decoded record. Keys are the flattened feature keys of features.json."""

    shard: Path
    index: int  # record number within the shard
    num_steps: int
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # (T, *shape); text as object arrays of str
    images: dict[str, list[bytes]] = field(default_factory=dict)  # encoded, one per step
    episode_metadata: dict[str, Any] = field(default_factory=dict)  # every non-step feature
    language_instruction: str = ""  # first non-empty per-step instruction ("" when none)


def _text(values: RawValue) -> list[str]:
    return [v.decode("utf-8", errors="replace") for v in values]


def _num_steps(spec: FeatureSpec, n: int) -> int:
    if spec.size == 0 or n % spec.size:
        raise RldsError(f"feature {spec.key!r}: {n} values is not a whole number of steps of {spec.shape}")
    return n // spec.size


def _as_tensor(spec: FeatureSpec, values: RawValue, steps: int | None) -> np.ndarray:
    if isinstance(values, list):
        raise RldsError(f"feature {spec.key!r}: declared {spec.dtype} tensor but stored as bytes")
    dtype = np.dtype(spec.dtype)
    lead = () if steps is None else (steps,)
    return values.reshape(lead + spec.shape).astype(dtype, copy=False)


def _instruction(steps: dict[str, np.ndarray], specs: dict[str, FeatureSpec]) -> str:
    texts = [k for k, s in specs.items() if s.per_step and s.kind == "text" and "instruction" in k]
    keys = [k for k in _INSTRUCTION_KEYS if k in steps] + sorted(set(texts) - set(_INSTRUCTION_KEYS))
    return next((str(t) for k in keys for t in steps[k] if t), "")


def unflatten(
    raw: dict[str, RawValue], specs: dict[str, FeatureSpec], shard: Path, index: int
) -> RldsEpisode:
    """Split a flat Example into per-step arrays, step images and episode metadata, checking that every
    per-step feature holds the same number of steps."""
    missing = [k for k in specs if k not in raw]
    if missing:
        raise RldsError(f"{shard}: record {index}: features missing from the record: {missing}")
    ep = RldsEpisode(shard=shard, index=index, num_steps=0)
    lengths: dict[str, int] = {}
    for key, spec in specs.items():
        values = raw[key]
        if spec.per_step:
            lengths[key] = _num_steps(spec, len(values))
        if spec.kind == "image":
            _store_image(ep, spec, values)
        elif spec.kind == "text":
            _store_text(ep, spec, values)
        elif spec.per_step:
            ep.steps[key] = _as_tensor(spec, values, lengths[key])
        else:
            ep.episode_metadata[key] = _scalar_or_array(_as_tensor(spec, values, None))
    if len(set(lengths.values())) > 1:
        raise RldsError(f"{shard}: record {index}: per-step features disagree on the step count: {lengths}")
    ep.num_steps = next(iter(lengths.values()), 0)
    ep.language_instruction = _instruction(ep.steps, specs)
    return ep


def _store_image(ep: RldsEpisode, spec: FeatureSpec, values: RawValue) -> None:
    if not isinstance(values, list):
        raise RldsError(f"feature {spec.key!r}: declared an image but not stored as bytes")
    if spec.per_step:
        ep.images[spec.key] = values
    else:
        ep.episode_metadata[spec.key] = values[0] if len(values) == 1 else values


def _store_text(ep: RldsEpisode, spec: FeatureSpec, values: RawValue) -> None:
    texts = _text(values) if isinstance(values, list) else []
    if spec.per_step:
        ep.steps[spec.key] = np.array(texts, dtype=object)
    else:
        ep.episode_metadata[spec.key] = texts[0] if len(texts) == 1 else texts


def _scalar_or_array(arr: np.ndarray) -> Any:
    return arr.item() if arr.ndim == 0 else arr


# ------------------------------------------------------------------------------------------- images


def image_format(data: bytes) -> Literal["jpeg", "png"]:
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:4] == b"\x89PNG":
        return "png"
    raise RldsError(f"image bytes are neither JPEG nor PNG (starts with {data[:4].hex()})")


def _decode_pillow(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _decode_av(data: bytes, fmt: Literal["jpeg", "png"]) -> np.ndarray:
    import av

    codec = av.CodecContext.create("mjpeg" if fmt == "jpeg" else "png", "r")
    frames = codec.decode(av.Packet(data)) + codec.decode(None)
    if not frames:
        raise RldsError(f"{fmt} image could not be decoded")
    return frames[0].to_ndarray(format="rgb24")


def decode_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG bytes (sniffed, not trusted from the schema) to RGB uint8 HxWx3."""
    fmt = image_format(data)
    try:
        return _decode_pillow(data)
    except ImportError:
        return _decode_av(data, fmt)


# ------------------------------------------------------------------------------------------ dataset


@dataclass
class RldsDataset:
    """A TFDS/RLDS directory `<name>/<version>/` with dataset_info.json, features.json and shards."""

    root: Path
    info: DatasetInfo
    features: dict[str, FeatureSpec]

    @classmethod
    def open(cls, path: Path | str) -> RldsDataset:
        root = Path(path)
        if not root.is_dir():
            raise RldsError(f"{root}: not a directory")
        features = load_features(root / "features.json")
        info = load_dataset_info(root / "dataset_info.json")
        if info.file_format != "tfrecord":
            raise RldsError(f"{root / 'dataset_info.json'}: fileFormat {info.file_format!r} is not supported")
        return cls(root=root, info=info, features=features)

    @property
    def splits(self) -> dict[str, SplitInfo]:
        return {s.name: s for s in self.info.splits}

    def shards(self, split: str) -> list[Path]:
        """The split's shard files in order; each one must exist."""
        if split not in self.splits:
            raise RldsError(f"{self.root}: unknown split {split!r}; known: {sorted(self.splits)}")
        info = self.splits[split]
        paths = [self.root / self._shard_name(info, i) for i in range(len(info.shard_lengths))]
        for p in paths:
            if not p.is_file():
                raise RldsError(f"{p}: shard listed in dataset_info.json is missing")
        return paths

    def _shard_name(self, split: SplitInfo, i: int) -> str:
        n = len(split.shard_lengths)
        return (
            split.filepath_template.replace("{DATASET}", self.info.name)
            .replace("{SPLIT}", split.name)
            .replace("{FILEFORMAT}", self.info.file_format)
            .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{n:05d}")
        )

    def scan_episodes(self, shard: Path | str, verify: bool = True) -> Iterator[RldsEpisode | RecordError]:
        """Every record of a shard, decoded; a bad one (CRC, truncation, undecodable Example, inconsistent
        features) comes as its `RecordError` in its place, and the records after it are still read while
        the framing is intact (`scan_records`)."""
        shard = Path(shard)
        for index, offset, item in scan_records(shard, verify=verify):
            yield item if isinstance(item, RecordError) else self._decode(item, shard, index, offset)

    def _decode(self, payload: bytes, shard: Path, index: int, offset: int) -> RldsEpisode | RecordError:
        try:
            raw = parse_example(payload)
        except Exception as exc:  # protobuf's DecodeError
            return RecordError(shard, index, offset, f"not a tf.train.Example: {exc}")
        try:
            return unflatten(raw, self.features, shard, index)
        except RldsError as exc:
            return RecordError(shard, index, offset, str(exc).removeprefix(f"{shard}: record {index}: "))

    def iter_episodes(self, shard: Path | str, verify: bool = True) -> Iterator[RldsEpisode]:
        """The decoded records of a shard; the first bad record raises its `RecordError`."""
        for item in self.scan_episodes(shard, verify=verify):
            if isinstance(item, RecordError):
                raise item
            yield item

    @property
    def step_features(self) -> dict[str, FeatureSpec]:
        return {k: s for k, s in self.features.items() if s.per_step}
