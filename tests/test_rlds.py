"""RLDS reader without TensorFlow: fixture round trips, corrupt inputs, and the real Bridge debug set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.sources import rlds
from ingest.sources.rlds import RecordError, RldsDataset, RldsError, decode_image
from tests.fixtures.rlds import CAMERAS, crc32c_bitwise, encode_example, image_colour, write_rlds_dataset

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "oxe_bridge_rlds" / "bridge_dataset" / "1.0.0"


def _all_episodes(ds: RldsDataset, split: str) -> list[rlds.RldsEpisode]:
    return [ep for shard in ds.shards(split) for ep in ds.iter_episodes(shard)]


# ------------------------------------------------------------------------------------ low level


def test_crc32c_known_vector_and_fallback_agree() -> None:
    assert rlds._crc32c(b"123456789") == 0xE3069283
    assert rlds.crc32c_py(b"123456789") == 0xE3069283
    blob = bytes(range(256)) * 7
    assert rlds.crc32c_py(blob) == rlds._crc32c(blob) == crc32c_bitwise(blob)


def test_frame_and_parse_example_roundtrip(tmp_path: Path) -> None:
    payload = encode_example(
        {
            "a": [b"x", b"", b"\x00end\x00"],
            "f": np.array([1.5, -2.25], np.float32),
            "i": np.array([-3, 0, 2**40], np.int64),
            "one": [b"only"],
        }
    )
    path = tmp_path / "r.tfrecord"
    path.write_bytes(rlds.frame_record(payload) * 2)
    records = list(rlds.iter_records(path))
    assert records == [payload, payload]
    raw = rlds.parse_example(records[0])
    assert raw["a"] == [b"x", b"", b"\x00end\x00"]  # NULs survive, single elements stay lists
    assert raw["one"] == [b"only"]
    np.testing.assert_array_equal(raw["f"], [1.5, -2.25])
    np.testing.assert_array_equal(raw["i"], [-3, 0, 2**40])


# --------------------------------------------------------------------------------- fixture trips


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_fixture_roundtrip_exact_values(tmp_path: Path, fmt: str) -> None:
    if fmt == "jpeg":
        pytest.importorskip("PIL")
    fx = write_rlds_dataset(tmp_path, image_format=fmt, num_steps=6, hw=(16, 24))
    ds = RldsDataset.open(fx.root)
    assert list(ds.splits) == ["train", "val"]
    assert ds.splits["train"].shard_lengths == [3, 2]
    for split in ds.splits:
        assert ds.shards(split) == fx.shards[split]
        got = _all_episodes(ds, split)
        want = [ep for shard in fx.episodes[split] for ep in shard]
        assert len(got) == len(want)
        assert [g.index for g in got] == ([0, 1, 2, 0, 1] if split == "train" else [0, 1])
        for e, (g, w) in enumerate(zip(got, want, strict=True)):
            _check_episode(g, w, e, fmt)


def _check_episode(got: rlds.RldsEpisode, want, e: int, fmt: str) -> None:
    assert got.num_steps == 6
    for key, arr in want.steps.items():
        assert got.steps[key].dtype == arr.dtype, key
        assert got.steps[key].shape == arr.shape, key
        if arr.dtype == np.float64:  # stored as float32 on disk, as TFDS does
            np.testing.assert_array_equal(got.steps[key], arr.astype(np.float32).astype(np.float64))
        else:
            np.testing.assert_array_equal(got.steps[key], arr, err_msg=key)
    assert got.language_instruction == want.instruction
    assert list(got.steps["steps/language_instruction"]) == [want.instruction] * 6
    assert got.episode_metadata == {
        "episode_metadata/file_path": want.file_path,
        "episode_metadata/episode_id": want.episode_id,
        "episode_metadata/has_language": True,
    }
    assert set(got.images) == {f"steps/observation/{c}" for c in CAMERAS}
    for c, cam in enumerate(CAMERAS):
        frames = [decode_image(b) for b in got.images[f"steps/observation/{cam}"]]
        for t, img in enumerate(frames):
            assert img.shape == (16, 24, 3) and img.dtype == np.uint8
            diff = np.abs(img.astype(int) - np.array(image_colour(e, t, c))).max()
            assert diff <= (0 if fmt == "png" else 3), (cam, t, diff)


def test_decode_image_pyav_fallback_matches(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    fx = write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=2)
    ds = RldsDataset.open(fx.root)
    ep = next(ds.iter_episodes(ds.shards("train")[0]))
    data = ep.images["steps/observation/image_0"][1]
    via_av = rlds._decode_av(data, "jpeg")
    assert via_av.shape == (16, 24, 3)
    assert np.abs(via_av.astype(int) - decode_image(data).astype(int)).max() <= 3


def test_decode_image_rejects_unknown_bytes() -> None:
    with pytest.raises(RldsError, match="neither JPEG nor PNG"):
        decode_image(b"GIF89a....")


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("how", ["crc", "length_crc"])
def test_flipped_byte_is_caught(tmp_path: Path, how: str) -> None:
    fx = write_rlds_dataset(tmp_path, image_format="png", corrupt=how, corrupt_record=1)
    path, record, offset = fx.corrupted
    ds = RldsDataset.open(fx.root)
    episodes = ds.iter_episodes(path)
    assert next(episodes).index == 0  # records before the bad one are fine
    with pytest.raises(RecordError, match="CRC32C mismatch") as info:
        next(episodes)
    err = info.value
    assert (err.path, err.record, err.offset) == (str(path), 1, offset)
    assert str(path) in str(err) and "record 1" in str(err) and f"byte offset {offset}" in str(err)
    # without verification the flipped payload byte goes unnoticed by the framing layer
    if how == "crc":
        assert len(list(rlds.iter_records(path, verify=False))) == 3


def test_truncated_shard_names_file(tmp_path: Path) -> None:
    fx = write_rlds_dataset(tmp_path, image_format="png", corrupt="truncate", corrupt_record=2)
    path, record, offset = fx.corrupted
    ds = RldsDataset.open(fx.root)
    with pytest.raises(RecordError, match="truncated payload") as info:
        list(ds.iter_episodes(path))
    assert (info.value.path, info.value.record, info.value.offset) == (str(path), 2, offset)
    assert str(path) in str(info.value)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    path.write_bytes(rlds.frame_record(b"abc") + b"\x05\x00\x00")
    with pytest.raises(RecordError, match=r"record 1 at byte offset 19: truncated header"):
        list(rlds.iter_records(path))


def test_missing_features_json_refused(tmp_path: Path) -> None:
    fx = write_rlds_dataset(tmp_path, image_format="png", corrupt="no_features")
    with pytest.raises(RldsError, match="features.json is missing") as info:
        RldsDataset.open(fx.root)
    assert str(fx.root / "features.json") in str(info.value)


def test_missing_shard_and_unknown_split(tmp_path: Path) -> None:
    fx = write_rlds_dataset(tmp_path, image_format="png")
    fx.shards["train"][1].unlink()
    ds = RldsDataset.open(fx.root)
    with pytest.raises(RldsError, match="shard listed in dataset_info.json is missing"):
        ds.shards("train")
    with pytest.raises(RldsError, match="unknown split 'test'"):
        ds.shards("test")


def test_step_count_mismatch_is_named(tmp_path: Path) -> None:
    fx = write_rlds_dataset(tmp_path, image_format="png", splits={"train": [1]})
    ds = RldsDataset.open(fx.root)
    raw = rlds.parse_example(next(rlds.iter_records(fx.shards["train"][0])))
    raw["steps/action"] = raw["steps/action"][:-7]  # one step short
    with pytest.raises(RldsError, match="disagree on the step count"):
        rlds.unflatten(raw, ds.features, fx.shards["train"][0], 0)
    raw["steps/action"] = raw["steps/action"][:-1]
    with pytest.raises(RldsError, match="not a whole number of steps"):
        rlds.unflatten(raw, ds.features, fx.shards["train"][0], 0)


# ---------------------------------------------------------------------------------- real Bridge


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "features.json").is_file(), reason="needs ../shared/realdata/oxe_bridge_rlds")
def test_real_bridge_debug_dataset() -> None:
    ds = RldsDataset.open(REAL)
    info = json.loads((REAL / "dataset_info.json").read_text())
    assert set(ds.splits) == {"train", "val"}
    for split in info["splits"]:
        shards = ds.shards(split["name"])
        assert len(shards) == len(split["shardLengths"]) == 1
        for shard, expected in zip(shards, split["shardLengths"], strict=True):
            episodes = list(ds.iter_episodes(shard))
            assert len(episodes) == int(expected) == 25
            for ep in episodes:
                _check_real_episode(ep)


def _check_real_episode(ep: rlds.RldsEpisode) -> None:
    assert ep.num_steps == 10
    assert ep.steps["steps/action"].shape == (10, 7) and ep.steps["steps/action"].dtype == np.float32
    assert ep.steps["steps/observation/state"].shape == (10, 7)
    assert ep.steps["steps/language_embedding"].shape == (10, 512)
    assert np.isfinite(ep.steps["steps/action"]).all()
    assert ep.steps["steps/is_first"].tolist() == [True] + [False] * 9
    # Octo cut each episode to its first 10 steps: no step is last/terminal and no reward is given
    assert not ep.steps["steps/is_last"].any() and not ep.steps["steps/is_terminal"].any()
    assert isinstance(ep.language_instruction, str) and ep.language_instruction.strip()
    assert ep.language_instruction in {
        "put carrot on plate",
        "flip pot upright which is in sink",
        "put cup from counter or drying rack into sink",
        "turn lever vertical to front",
    }
    assert ep.episode_metadata["episode_metadata/file_path"].startswith("/nfs/")
    assert len(ep.images) == 4
    for frames in ep.images.values():
        assert len(frames) == 10
        imgs = [decode_image(b) for b in frames]
        assert all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in imgs)
