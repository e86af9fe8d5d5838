"""`train/data.py` on datasets built the way users build them: EgoDex input -> `ingest run` ->
`ingest latents` -> copies edited into a low-tier and an action-free dataset -> `catalog build` -> a mixture.

Expected values are read here from the Parquet, safetensors and meta files directly (pyarrow, safetensors,
json), never through `train/data.py`'s readers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import fields
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open

from catalog.index import build
from catalog.mixture import load_mixture, resolve, write_mixture
from catalog.mixture_file import Mixture, MixtureEntry
from catalog.query import scan
from ingest.job import RunOptions, run
from ingest.latents_job import LatentsOptions, run_latents
from schemas.canonical import dimension_names
from schemas.latents import LatentsConfig
from tests.fixtures.dino import save_tiny_dino
from tests.fixtures.egodex import write_dataset, write_episode
from train.batch import Batch
from train.data import TrainingData, build_eval_samples, build_loader
from train.normalize import Normalizer, masked_stats, merge_moments, merge_stats
from train.plan import DataConfig, DataError, dataset_vector_stats, is_held_out, split_episodes

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
CAM = "observation.images.ego"
# The long episode (120 source frames -> 40 at 10 Hz): its left hand is not trusted at source frame 27, which
# is 10 Hz frame 9 (a cached latent frame).
LOW = {"leftHand": [27]}
HISTORY, FUTURE, CHUNK, H = 3, 6, 16, 5


# --------------------------------------------------------------------------- the datasets


def _edit(ds: Path, *, tier: str, kind: str | None = None, has_action: bool = True) -> None:
    """Set every episode's tier (and has_action, caption prefix) and the card's embodiment kind."""
    meta = ds / "meta"
    eps = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
    for e in eps:
        e.update(quality_tier=tier, has_action=has_action, caption=f"{ds.name}: {e['caption']}")
    (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    if kind:
        card = json.loads((meta / "dataset_card.json").read_text())
        card["embodiment_kind"] = kind
        (meta / "dataset_card.json").write_text(json.dumps(card))


def _set_robot_type(ds: Path, robot_type: str) -> None:
    """meta/info.json `robot_type`: the dataset's embodiment (per-embodiment action heads key on it)."""
    info = json.loads((ds / "meta/info.json").read_text())
    info["robot_type"] = robot_type
    (ds / "meta/info.json").write_text(json.dumps(info, indent=4))


def _poison_action_stats(ds: Path) -> None:
    """An action-free dataset's action statistics must not count: make them absurd."""
    stats = json.loads((ds / "meta/stats.json").read_text())
    stats["action"]["mean"] = [100.0] * len(stats["action"]["mean"])
    (ds / "meta/stats.json").write_text(json.dumps(stats))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    tmp = tmp_path_factory.mktemp("data")
    save_tiny_dino(tmp / "dino")
    write_dataset(tmp / "in", 4, 60)  # 4 episodes of 20 frames at 10 Hz
    write_episode(tmp / "in" / "test" / "basic_pick_place", 2, 120, phase=1.1, low_confidence=LOW)
    r = tmp / "root"
    run(RunOptions(source="egodex", input=tmp / "in", output=r, name="ego", workers=2, progress=False))
    latents = LatentsConfig(model_dir=tmp / "dino")
    run_latents(LatentsOptions(dataset=r / "ego", latents=latents, workers=2, progress=False))
    for name in ("ego_low", "video"):
        shutil.copytree(r / "ego", r / name, ignore=shutil.ignore_patterns(".work"))
    _edit(r / "ego", tier="high")
    _edit(r / "ego_low", tier="low")
    _edit(r / "video", tier="actionless", kind="human_actionless", has_action=False)
    _poison_action_stats(r / "video")
    _set_robot_type(r / "ego_low", "other_hand")
    build(r)
    return r


def _mixture(root: Path, name: str, hands_tasks: dict | None = None) -> Path:
    hands = {"tasks": hands_tasks} if hands_tasks else {}
    m = Mixture(
        name=name,
        weighting="explicit",
        entries=[
            MixtureEntry(name="hands", where='category == "human_action"', weight=3.0, **hands),
            MixtureEntry(name="video", where='category == "human_actionless"', weight=1.0),
        ],
    )
    return write_mixture(m, root.parent / f"{name}.yaml")


@pytest.fixture(scope="module")
def mixture(root: Path) -> Path:
    return _mixture(root, "mix")


def _cfg(root: Path, mixture: Path, **kw) -> DataConfig:
    base = {"holdout": 0.0, "batch_size": 48, "history_offset": HISTORY, "future_offset": FUTURE}
    return DataConfig(root=root, mixture=mixture, **{**base, **kw})


@pytest.fixture(scope="module")
def data(root: Path, mixture: Path) -> TrainingData:
    return TrainingData.open(_cfg(root, mixture))


# --------------------------------------------------------------------------- direct readers (the truth)


def raw_episode(root: Path, ds: str, ep: int) -> dict[str, np.ndarray]:
    t = pq.read_table(root / ds / f"data/chunk-000/episode_{ep:06d}.parquet")
    return {k: np.array(t.column(k).to_pylist()) for k in ("observation.state", "action",
            "observation.state_mask", "action_mask")}  # fmt: skip


def raw_latents(root: Path, ds: str, ep: int) -> tuple[np.ndarray, list[int]]:
    with safe_open(str(root / ds / f"latents/chunk-000/{CAM}/episode_{ep:06d}.safetensors"), "numpy") as f:
        return f.get_tensor("latents"), f.get_tensor("frame_index").tolist()


def episodes_jsonl(root: Path, ds: str) -> list[dict]:
    return [json.loads(line) for line in (root / ds / "meta/episodes.jsonl").read_text().splitlines()]


def long_episode(root: Path) -> int:
    return next(e["episode_index"] for e in episodes_jsonl(root, "ego") if e["length"] == 40)


def specs(data: TrainingData, steps: int, rank: int = 0) -> list:
    return [data.spec(s, rank, i) for s in range(steps) for i in range(data.cfg.batch_size)]


def assert_batches_equal(a: Batch, b: Batch) -> None:
    for f in fields(Batch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert torch.equal(x, y) if torch.is_tensor(x) else x == y, f.name


# --------------------------------------------------------------------------- values


def _check_vectors(n: Normalizer, b: Batch, i: int, raw: dict, t: int, acts: bool) -> None:
    s_mask = raw["observation.state_mask"][t]
    assert b.state_mask[i].numpy().tolist() == s_mask.tolist()
    state = n.unnormalize_state(b.state[i].numpy())
    np.testing.assert_allclose(state[s_mask], raw["observation.state"][t][s_mask], rtol=1e-5, atol=1e-6)
    assert (b.state[i].numpy()[~s_mask] == 0).all()
    for rows, vals, masks in ((range(t, t + CHUNK), b.actions[i], b.action_mask[i]),
                              (range(t - H, t), b.history_actions[i], b.history_mask[i])):  # fmt: skip
        for j, k in enumerate(rows):
            inside = 0 <= k < len(raw["action"])
            want = raw["action_mask"][k] & acts if inside else np.zeros(146, dtype=bool)
            assert masks[j].numpy().tolist() == want.tolist()
            got = n.unnormalize_actions(vals[j].numpy())
            if want.any():
                np.testing.assert_allclose(got[want], raw["action"][k][want], rtol=1e-5, atol=1e-6)
            assert (vals[j].numpy()[~want] == 0).all()


def _check_latents(n: Normalizer, b: Batch, i: int, lat: np.ndarray, frames: list[int], t: int) -> None:
    mean, std = np.array(n.latent_mean, np.float32), np.array(n.latent_std, np.float32)

    def norm(f: int) -> np.ndarray:
        return (lat[frames.index(f)].astype(np.float32) - mean) / std

    np.testing.assert_allclose(b.obs_latents[i, 0].numpy(), norm(max(t - HISTORY, 0)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.obs_latents[i, 1].numpy(), norm(t), rtol=1e-5, atol=1e-5)
    if bool(b.future_valid[i]):
        np.testing.assert_allclose(b.future_latents[i].numpy(), norm(t + FUTURE), rtol=1e-5, atol=1e-5)
    else:
        assert (b.future_latents[i] == 0).all()


def test_batch_values_equal_the_files(root: Path, data: TrainingData) -> None:
    b = data.batch(0)
    assert b.obs_latents.shape == (48, 2, 196, 32) and b.actions.shape == (48, CHUNK, 146)
    assert b.history_actions.shape == (48, H, 146) and b.obs_latents.dtype == torch.float32
    captions = {(ds, e["episode_index"]): e["caption"] for ds in ("ego", "ego_low", "video")
                for e in episodes_jsonl(root, ds)}  # fmt: skip
    for i in range(len(b)):
        ds, ep, t = b.dataset[i], int(b.episode_index[i]), int(b.frame_index[i])
        raw = raw_episode(root, ds, ep)
        length = len(raw["action"])
        assert t % 3 == 0 and 0 <= t < length and bool(b.future_valid[i]) == (t + FUTURE < length)
        assert b.captions[i] == captions[(ds, ep)]
        _check_vectors(data.normalizer, b, i, raw, t, acts=ds != "video")
        _check_latents(data.normalizer, b, i, *raw_latents(root, ds, ep), t)


def test_masked_values_are_zero(root: Path, data: TrainingData) -> None:
    ep = long_episode(root)
    raw = raw_episode(root, "ego", ep)
    assert not raw["observation.state_mask"][9, :73].any() and raw["observation.state_mask"][9, 73:].all()
    assert np.abs(raw["observation.state"][9, :3]).max() > 0.01  # the measured value is in the file
    s = data.sample_at("ego", ep, 9)
    assert not s.state_mask[:73].any() and (s.state[:73] == 0).all() and s.state_mask[73:].all()
    assert not s.action_mask[0, :9].any() and (s.actions[0, :9] == 0).all() and s.action_mask[0, 9:].all()
    assert not s.history_mask[-1, :73].any() and (s.history_actions[-1, :73] == 0).all()


def test_chunk_padding_at_the_end_and_history_at_the_start(root: Path, data: TrainingData) -> None:
    ep = long_episode(root)
    raw = raw_episode(root, "ego", ep)
    end = data.sample_at("ego", ep, 36)
    assert end.action_mask[:4].any(axis=1).all() and not end.action_mask[4:].any()
    assert (end.actions[4:] == 0).all() and not end.future_valid and (end.future_latents == 0).all()
    first = data.sample_at("ego", ep, 0)
    assert not first.history_mask.any() and (first.history_actions == 0).all()
    np.testing.assert_array_equal(first.obs_latents[0], first.obs_latents[1])  # o_{-3} clamped to o_0
    third = data.sample_at("ego", ep, 3)
    assert not third.history_mask[:2].any() and (third.history_mask[2:] == raw["action_mask"][:3]).all()
    np.testing.assert_array_equal(third.history_actions[2:], first.actions[:3])
    video = data.sample_at("video", ep, 3, "visual_forecasting")
    assert not video.action_mask.any() and not video.history_mask.any() and (video.actions == 0).all()


def card_action_dims(root: Path, ds: str) -> np.ndarray:
    card = json.loads((root / ds / "meta/dataset_card.json").read_text())
    return np.isin(dimension_names(), card["valid_action_dims"])


def test_action_dims_are_the_cards_at_every_frame(root: Path, data: TrainingData) -> None:
    """The chunk's "which dimensions exist" input is the dataset card's, never the future chunk's masks."""
    ep = long_episode(root)
    card = card_action_dims(root, "ego")
    assert card[:73].all()  # the left hand exists in the dataset ...
    before, lost = data.sample_at("ego", ep, 6), data.sample_at("ego", ep, 9)
    assert not lost.action_mask[0, :9].any() and before.action_mask[0, :9].all()  # ... not at frame 9
    np.testing.assert_array_equal(before.action_dims, card)
    np.testing.assert_array_equal(lost.action_dims, card)
    video = data.sample_at("video", ep, 3, "visual_forecasting")
    assert not video.action_dims.any()  # an episode without actions has none
    b = data.batch(0)
    assert not (b.action_mask & ~b.action_dims[:, None, :]).any()  # every target inside the dimensions
    for i in range(len(b)):
        want = card_action_dims(root, b.dataset[i]) & (b.dataset[i] != "video")
        assert b.action_dims[i].numpy().tolist() == want.tolist()


# --------------------------------------------------------------------------- normalisation


def _all_frames(root: Path, ds: str, key: str, every: int = 1) -> np.ndarray:
    """Every frame's values of `key` (of every `every`-th episode), NaN where its mask is False."""
    eps = sorted(e["episode_index"] for e in episodes_jsonl(root, ds))[::every]
    raws = [raw_episode(root, ds, e) for e in eps]
    mask = "observation.state_mask" if key == "observation.state" else "action_mask"
    return np.concatenate([np.where(r[mask], r[key], np.nan) for r in raws]).astype(np.float64)


def test_normalizer_statistics(root: Path, data: TrainingData, tmp_path: Path) -> None:
    n = data.normalizer
    assert n.datasets == ["ego", "ego_low", "video"] and n.mode == "mean_std"
    # The three datasets are copies: merged state stats are ego's; video's (poisoned) action stats are out.
    # Statistics are over valid values only (EgoDex keeps a measured value under a False mask).
    for key, mean, std in (("observation.state", n.state_mean, n.state_std), ("action", n.action_mean,
                           n.action_std)):  # fmt: skip
        x = _all_frames(root, "ego", key)
        valid = ~np.isnan(x).all(0)
        np.testing.assert_allclose(np.asarray(mean)[valid], np.nanmean(x, 0)[valid], rtol=1e-5, atol=1e-7)
        want = np.maximum(np.nanstd(x, 0)[valid], 1e-3)
        np.testing.assert_allclose(np.asarray(std)[valid], want, rtol=1e-4, atol=1e-7)
        assert (np.asarray(mean)[~valid] == 0).all() and (np.asarray(std)[~valid] == 1).all()
    assert min(n.action_std) == pytest.approx(1e-3)  # keypoints at t+1 barely move: floored
    lat = np.concatenate([raw_latents(root, "ego", e["episode_index"])[0].reshape(-1, 32)
                          for e in episodes_jsonl(root, "ego")]).astype(np.float64)  # fmt: skip
    np.testing.assert_allclose(n.latent_mean, lat.mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(n.latent_std, lat.std(0), rtol=1e-3, atol=1e-4)
    back = Normalizer.load(n.save(tmp_path / "normalizer.json"))
    assert back == n
    x = torch.randn(4, 16, 146, dtype=torch.float64)
    torch.testing.assert_close(back.unnormalize_actions(back.normalize_actions(x)), x)
    assert back.normalize_actions(x).dtype == torch.float64
    mask = torch.rand(4, 16, 146) > 0.5
    assert (back.normalize_actions(x, mask)[~mask] == 0).all()
    old = n.model_dump(exclude={"mode", "state_q01", "state_q99", "action_q01", "action_q99"})
    assert Normalizer.model_validate(old).normalize_state(x[0]).tolist() == n.normalize_state(x[0]).tolist()


def test_statistics_of_a_large_dataset_read_every_kth_episode(root: Path, mixture: Path) -> None:
    n = TrainingData.open(_cfg(root, mixture, stats_rows=50)).normalizer
    frames = sum(e["length"] for e in episodes_jsonl(root, "ego"))
    every = -(-frames // 50)
    assert every == 3 and len(episodes_jsonl(root, "ego")) > every  # a subset of the episodes is read
    x = _all_frames(root, "ego", "observation.state", every)
    valid = ~np.isnan(x).all(0)
    np.testing.assert_allclose(np.asarray(n.state_mean)[valid], np.nanmean(x, 0)[valid], rtol=1e-5, atol=1e-7)
    q01 = np.nanquantile(x, 0.01, axis=0)[valid]
    wide = (np.nanquantile(x, 0.99, axis=0)[valid] - q01) > 2e-3  # not widened by the floor
    np.testing.assert_allclose(np.asarray(n.state_q01)[valid][wide], q01[wide], rtol=1e-5, atol=1e-6)


def test_quantile_normalisation_equals_numpy_on_the_parquet(root: Path, mixture: Path) -> None:
    """q01 -> -1, q99 -> 1 per dimension, the quantiles of the valid values (numpy on the raw Parquet)."""
    data = TrainingData.open(_cfg(root, mixture, normalizer="quantile"))
    assert data.normalizer.mode == "quantile"
    lo, hi = {}, {}
    for key in ("observation.state", "action"):
        lo[key], hi[key] = np.nanquantile(_all_frames(root, "ego", key), [0.01, 0.99], axis=0)
        half = np.maximum((hi[key] - lo[key]) / 2, 1e-3)  # the floor of a dimension that barely moves
        lo[key], hi[key] = (hi[key] + lo[key]) / 2 - half, (hi[key] + lo[key]) / 2 + half
    b, checked = data.batch(0), 0
    for i in range(len(b)):
        raw = raw_episode(root, b.dataset[i], int(b.episode_index[i]))
        t = int(b.frame_index[i])
        m = raw["observation.state_mask"][t]
        x = raw["observation.state"][t][m]
        want = (
            2 * (x - lo["observation.state"][m]) / (hi["observation.state"][m] - lo["observation.state"][m])
            - 1
        )
        np.testing.assert_allclose(b.state[i].numpy()[m], want, rtol=1e-4, atol=1e-4)
        if b.dataset[i] != "video" and t + CHUNK <= len(raw["action"]):
            am = raw["action_mask"][t]
            a = raw["action"][t][am]
            want = 2 * (a - lo["action"][am]) / (hi["action"][am] - lo["action"][am]) - 1
            np.testing.assert_allclose(b.actions[i, 0].numpy()[am], want, rtol=1e-4, atol=1e-4)
            checked += 1
    assert checked > 5


def test_masked_values_do_not_change_the_statistics(root: Path, mixture: Path, tmp_path: Path) -> None:
    """Huge values under a False mask (a copy of the root) leave every statistic as it was."""
    import pyarrow as pa

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    poisoned = 0
    for path in sorted((copy / "ego").glob("data/*/*.parquet")):
        table = pq.read_table(path)
        for key, mask in (("observation.state", "observation.state_mask"), ("action", "action_mask")):
            x, m = np.array(table[key].to_pylist()), np.array(table[mask].to_pylist())
            partial = m.any(0) & ~m.all(0)  # dimensions both valid and masked somewhere
            poisoned += int((~m[:, partial]).sum())
            x[~m] = 1e9
            col = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])
            table = table.set_column(table.schema.get_field_index(key), key, col)
        pq.write_table(table, path)
    assert poisoned > 0  # the edit reached dimensions whose statistics exist
    for mode in ("mean_std", "quantile"):
        want = TrainingData.open(_cfg(root, mixture, normalizer=mode)).normalizer
        got = TrainingData.open(_cfg(copy, mixture, normalizer=mode)).normalizer
        for name in ("state_mean", "state_std", "action_mean", "action_std", "state_q01", "action_q99"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-6, atol=1e-9)


def test_embodiment_ids_follow_info_json(root: Path, mixture: Path, data: TrainingData) -> None:
    """Each sample's id names its dataset's meta/info.json robot_type; an embodiment the model was not
    built with is a one-line error at open."""
    robot = {ds: json.loads((root / ds / "meta/info.json").read_text())["robot_type"]
             for ds in ("ego", "ego_low", "video")}  # fmt: skip
    assert robot["ego_low"] == "other_hand" != robot["ego"]
    assert data.embodiments == sorted(set(robot.values()))
    b = data.batch(0)
    assert [data.embodiments[int(e)] for e in b.embodiment] == [robot[d] for d in b.dataset]
    fixed = TrainingData.open(_cfg(root, mixture), embodiments=["other_hand", robot["ego"], "widowx"])
    b = fixed.batch(0)
    assert [fixed.embodiments[int(e)] for e in b.embodiment] == [robot[d] for d in b.dataset]
    with pytest.raises(DataError, match="embodiment 'other_hand' was not seen when the model was built"):
        TrainingData.open(_cfg(root, mixture), embodiments=[robot["ego"]])


def test_merge_moments_equals_pooled_moments() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 2, (50, 3)), rng.normal(-1, 0.5, (150, 3))
    parts = np.stack([a.mean(0), b.mean(0)]), np.stack([a.std(0), b.std(0)])
    weights = np.array([[50, 50, 0], [150, 150, 0]], dtype=np.float64)
    mean, std = merge_moments(*parts, weights, floor=1e-3)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(mean[:2], both.mean(0)[:2])
    np.testing.assert_allclose(std[:2], both.std(0)[:2])
    assert (mean[2], std[2]) == (0.0, 1.0)  # no weight: identity


def test_merge_stats_weights_by_valid_frames() -> None:
    """Moments merge exactly (pooled valid values); quantiles are the valid-frame-weighted mean of the
    datasets' quantiles; a dataset without any episode (all held out) weighs nothing."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 2, (400, 146)), rng.normal(-1, 0.5, (100, 146))
    ma, mb = rng.random((400, 146)) > 0.25, rng.random((100, 146)) > 0.5
    a[~ma], b[~mb] = 1e9, np.nan  # never counted
    empty = dataset_vector_stats(Path("/nowhere"), [], np.zeros(0, np.int64), np.zeros(0, bool), 100)
    parts = [masked_stats(a, ma), masked_stats(b, mb), empty["action"]]
    merged = merge_stats(parts, 1e-3)
    pooled = np.concatenate([np.where(ma, a, np.nan), np.where(mb, b, np.nan)])
    np.testing.assert_allclose(merged.mean, np.nanmean(pooled, 0), rtol=1e-9)
    np.testing.assert_allclose(merged.std, np.nanstd(pooled, 0), rtol=1e-9)
    na, nb = ma.sum(0), mb.sum(0)
    qa, qb = (
        np.nanquantile(np.where(ma, a, np.nan), 0.01, 0),
        np.nanquantile(np.where(mb, b, np.nan), 0.01, 0),
    )
    np.testing.assert_allclose(merged.q01, (na * qa + nb * qb) / (na + nb), rtol=1e-9)
    np.testing.assert_allclose(merged.count, na + nb)


# --------------------------------------------------------------------------- sampling


def test_determinism_resume_and_ranks(root: Path, mixture: Path, data: TrainingData) -> None:
    cfg = _cfg(root, mixture, batch_size=8)
    again = TrainingData.open(cfg)
    loader = iter(build_loader(cfg, data=again))
    stream = [next(loader) for _ in range(5)]
    for s, b in enumerate(stream):
        assert_batches_equal(b, again.batch(s))
    resumed = iter(build_loader(cfg, start_step=3))
    assert_batches_equal(next(resumed), stream[3])
    assert_batches_equal(next(resumed), stream[4])
    key = [(x.dataset, x.episode_index, x.frame_index, x.task) for x in specs(data, 4, rank=0)]
    other = [(x.dataset, x.episode_index, x.frame_index, x.task) for x in specs(data, 4, rank=1)]
    assert key != other and sum(a == b for a, b in zip(key, other, strict=True)) < len(key) / 2
    seeded = TrainingData.open(_cfg(root, mixture, seed=1))
    assert [(x.episode_index, x.frame_index) for x in specs(seeded, 4)] != [k[1:3] for k in key]


def test_tasks_follow_the_tiers(root: Path, data: TrainingData) -> None:
    drawn = specs(data, 80)
    by_ds = {ds: Counter(x.task for x in drawn if x.dataset == ds) for ds in ("ego", "ego_low", "video")}
    assert set(by_ds["video"]) == {3}
    assert set(by_ds["ego_low"]) == {1, 2, 3}
    assert set(by_ds["ego"]) == {0, 1, 2, 3} and min(by_ds["ego"].values()) > 0.15 * by_ds["ego"].total()
    assert all(x.future_valid for x in drawn if x.task != 0)
    assert any(not x.future_valid for x in drawn if x.task == 0)  # end frames: policy only
    narrowed = TrainingData.open(
        _cfg(root, _mixture(root, "narrow", {"high": ["policy", "visual_forecasting"]}))
    )
    tasks = Counter((x.dataset, x.task) for x in specs(narrowed, 40))
    assert {k[0] for k in tasks} == {"ego", "video"} and {k[1] for k in tasks if k[0] == "ego"} == {0, 3}


def test_dataset_frequencies_follow_the_plan(root: Path, mixture: Path, data: TrainingData) -> None:
    plan = resolve(root, load_mixture(mixture))
    want = {(e.name, d.dataset): d.weight for e in plan.entries for d in e.datasets}
    assert want[("hands", "ego")] == pytest.approx(0.375) and want[("video", "video")] == pytest.approx(0.25)
    drawn = specs(data, 100)  # 4800 samples
    n = len(drawn)
    got = Counter((data.pools[x.pool].entry, x.dataset) for x in drawn)
    for key, w in want.items():
        assert abs(got[key] / n - w) < 4 * np.sqrt(w * (1 - w) / n), key
    ego = [x for x in drawn if x.dataset == "ego"]
    share = sum(x.episode_index == long_episode(root) for x in ego) / len(ego)
    assert abs(share - 40 / 120) < 4 * np.sqrt(2 / 9 / len(ego))  # episodes drawn in proportion to length


def test_two_workers_yield_steps_in_order(root: Path, mixture: Path) -> None:
    cfg = _cfg(root, mixture, batch_size=8, num_workers=2)
    single = TrainingData.open(cfg)
    loader = iter(build_loader(cfg, start_step=2, data=single))
    for s in range(2, 8):
        assert_batches_equal(next(loader), single.batch(s))


# --------------------------------------------------------------------------- held-out episodes


def test_held_out_episodes_never_train(root: Path, mixture: Path) -> None:
    cfg = _cfg(root, mixture, holdout=0.3, batch_size=16)
    rows = scan(root).select("dataset", "episode_index").collect()
    train, held = split_episodes(rows, 0.3)
    held_set = set(held.iter_rows())
    assert held_set == {r for r in rows.iter_rows() if is_held_out(*r, 0.3)}
    assert 0 < len(held_set) < rows.height and train.height + held.height == rows.height
    drawn = specs(TrainingData.open(cfg), 100)
    assert not {(x.dataset, x.episode_index) for x in drawn} & held_set
    batches = build_eval_samples(cfg, 40)
    assert [len(b) for b in batches] == [16, 16, 8]
    for b in batches:
        assert {(d, int(e)) for d, e in zip(b.dataset, b.episode_index, strict=True)} <= held_set
        assert set(b.task.tolist()) <= {0, 1} and bool(b.future_valid[b.task == 1].all())
    assert_batches_equal(build_eval_samples(cfg, 40)[2], batches[2])


def test_split_fraction_is_stable() -> None:
    rows = pl.DataFrame({"dataset": [f"d{i % 7}" for i in range(5000)], "episode_index": list(range(5000))})
    _, held = split_episodes(rows, 0.1)
    assert abs(held.height / 5000 - 0.1) < 0.015
    assert split_episodes(rows, 0.1)[1].equals(held)


def test_offsets_must_be_stride_multiples(root: Path, mixture: Path) -> None:
    with pytest.raises(DataError, match="future_offset 4 is not a multiple of the latents stride 3"):
        TrainingData.open(_cfg(root, mixture, future_offset=4))


def _stats(mean: float, std: float) -> dict[str, list[float]]:
    keys = {"mean": mean, "std": std, "q01": mean - 2 * std, "q99": mean + 2 * std}
    return {f"{kind}_{q}": [v] * 146 for kind in ("state", "action") for q, v in keys.items()}


def test_per_dataset_normalizer_applies_each_samples_own_statistics(tmp_path: Path) -> None:
    """`for_dataset` / `*_for`: sample i is normalised with datasets[i]'s statistics (checked against the
    affine map written out), an unknown dataset with the merged ones; the JSON round trip keeps them."""
    merged = _stats(0.0, 1.0)
    n = Normalizer(**merged, latent_mean=[0.0], latent_std=[1.0], datasets=["a", "b"],
                   per_dataset={"a": _stats(1.0, 2.0), "b": _stats(-3.0, 0.5)})  # fmt: skip
    assert n.for_dataset("c") is n and n.for_dataset("a").per_dataset == {}
    x = torch.randn(4, 16, 146)
    names = ["a", "b", "c", "a"]
    got = n.normalize_actions_for(names, x)
    for i, (mean, std) in enumerate([(1.0, 2.0), (-3.0, 0.5), (0.0, 1.0), (1.0, 2.0)]):
        torch.testing.assert_close(got[i], (x[i] - mean) / std)
    torch.testing.assert_close(n.unnormalize_actions_for(names, got), x)
    state = torch.randn(4, 146)
    torch.testing.assert_close(n.unnormalize_state_for(names, state)[1], state[1] * 0.5 - 3.0)
    mask = torch.rand(4, 16, 146) > 0.5
    assert (n.normalize_actions_for(names, x, mask)[~mask] == 0).all()
    assert Normalizer.load(n.save(tmp_path / "n.json")).for_dataset("b") == n.for_dataset("b")
    quantile = Normalizer.model_validate({**n.model_dump(), "mode": "quantile"})
    torch.testing.assert_close(quantile.normalize_actions_for(["b"], x[:1])[0], (x[0] + 3.0) / 1.0)


def test_normalize_per_dataset_statistics_are_each_datasets_own(root: Path, mixture: Path) -> None:
    """Each dataset's statistics are numpy's on its own valid values; a dataset without actions (video)
    keeps the merged action statistics; a batch of ego samples is normalised with ego's statistics."""
    data = TrainingData.open(_cfg(root, mixture, normalize_per="dataset"))
    n = data.normalizer
    assert sorted(n.per_dataset) == ["ego", "ego_low", "video"]
    for ds in ("ego", "video"):
        x = _all_frames(root, ds, "observation.state")
        valid = ~np.isnan(x).all(0)
        own = n.for_dataset(ds)
        np.testing.assert_allclose(
            np.asarray(own.state_mean)[valid], np.nanmean(x, 0)[valid], rtol=1e-5, atol=1e-7
        )
    assert n.for_dataset("video").action_mean == n.action_mean  # no action anywhere: the merged values
    assert n.for_dataset("video").action_std == n.action_std
    b = data.batch(0)
    i = next(i for i in range(len(b)) if b.dataset[i] == "ego")
    raw = raw_episode(root, "ego", int(b.episode_index[i]))
    t, m = int(b.frame_index[i]), raw["observation.state_mask"][int(b.frame_index[i])]
    own = n.for_dataset("ego")
    want = (raw["observation.state"][t] - np.asarray(own.state_mean)) / np.asarray(own.state_std)
    np.testing.assert_allclose(b.state[i].numpy()[m], want[m], rtol=1e-4, atol=1e-4)
