"""`ingest latents` end to end on ingested datasets: files, stats, resume, rejects, validation, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from ingest.cli import app
from ingest.job import RunOptions, run
from ingest.latents import encode_video, load_encoder
from ingest.latents_job import LatentsOptions, run_latents
from ingest.validate import validate_dataset
from schemas.latents import LatentsConfig, LatentsMeta, latents_path
from schemas.latents_reader import read_latents
from schemas.lerobot import video_path
from tests.fixtures.dino import save_tiny_dino
from tests.fixtures.egodex import write_dataset

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
CAM = "observation.images.ego"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_dino(tmp_path_factory.mktemp("dinov3-tiny"))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("latents-job")
    write_dataset(tmp / "in", 3, 40)  # 40 frames at 30 Hz -> 14 at 10 Hz -> 5 latent frames (0,3,..,12)
    run(RunOptions(source="egodex", input=tmp / "in", output=tmp / "out", workers=2, progress=False))
    return tmp / "out" / "egodex"


@pytest.fixture
def dataset(ingested: Path, tmp_path: Path) -> Path:
    shutil.copytree(ingested, tmp_path / "egodex")
    return tmp_path / "egodex"


def _opts(root: Path, model_dir: Path, **kw) -> LatentsOptions:
    return LatentsOptions(dataset=root, latents=LatentsConfig(model_dir=model_dir, **kw), workers=2,
                          progress=False)  # fmt: skip


def _file(root: Path, ep: int) -> Path:
    return root / latents_path(ep, CAM)


def test_cache_matches_direct_encoding_and_validates(dataset: Path, model_dir: Path) -> None:
    summary = run_latents(_opts(dataset, model_dir))
    assert (summary.files, summary.encoded, summary.rejected) == (3, 3, 0)
    assert validate_dataset(dataset) == []
    encoder = load_encoder(LatentsConfig(model_dir=model_dir, device="cpu"))
    everything = []
    for ep in range(3):
        with safe_open(str(_file(dataset, ep)), framework="numpy") as f:
            latents, frames = f.get_tensor("latents"), f.get_tensor("frame_index")
        assert latents.dtype == np.float16 and latents.shape == (5, 196, 32)
        assert frames.tolist() == [0, 3, 6, 9, 12]
        direct = encode_video(dataset / video_path(ep, CAM), frames, encoder, batch_size=2)
        np.testing.assert_array_equal(latents, direct)  # the Ray path gives the same bytes
        np.testing.assert_array_equal(read_latents(_file(dataset, ep), [9, 0]), latents[[3, 0]])
        everything.append(latents.astype(np.float64).reshape(-1, 32))
    meta = LatentsMeta.load(dataset)
    allx = np.concatenate(everything)
    assert meta.stats[CAM].count == len(allx) == 3 * 5 * 196
    np.testing.assert_allclose(meta.stats[CAM].mean, allx.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(meta.stats[CAM].std, allx.std(0), rtol=1e-9, atol=1e-9)
    assert meta.model_id == model_dir.name and not meta.random_weights and meta.n_tokens == 196


def test_rerun_encodes_only_what_is_missing(dataset: Path, model_dir: Path) -> None:
    run_latents(_opts(dataset, model_dir))
    before = _file(dataset, 1).read_bytes()
    mtime0 = _file(dataset, 0).stat().st_mtime_ns
    _file(dataset, 1).unlink()
    summary = run_latents(_opts(dataset, model_dir))
    assert (summary.encoded, summary.skipped) == (1, 2)
    assert _file(dataset, 1).read_bytes() == before
    assert _file(dataset, 0).stat().st_mtime_ns == mtime0


def test_corrupt_video_is_a_named_reject_and_the_rest_is_cached(dataset: Path, model_dir: Path) -> None:
    mp4 = dataset / video_path(1, CAM)
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 3])
    summary = run_latents(_opts(dataset, model_dir))
    assert (summary.encoded, summary.rejected) == (2, 1)
    assert _file(dataset, 0).exists() and _file(dataset, 2).exists() and not _file(dataset, 1).exists()
    rejects = [json.loads(x) for x in (dataset / "meta/rejects.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["source_path"]) for r in rejects] == [("latents", str(mp4))]
    assert "episode_000001.mp4" in rejects[0]["error"]
    assert json.loads((dataset / "meta/dataset_card.json").read_text())["rejects"] == 1
    problems = validate_dataset(dataset, check_videos=False)
    assert [(p.file, p.field) for p in problems] == [(latents_path(1, CAM), "file")]


def _rewrite(path: Path, change) -> None:
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        names, header = f.keys(), f.metadata()
        tensors = {k: f.get_tensor(k) for k in names}
    save_file(change(tensors), str(path), metadata=header)


def test_validate_sample_reads_the_drawn_latents_and_the_headers_of_all(
    dataset: Path, model_dir: Path
) -> None:
    from ingest.validate import sample_positions

    run_latents(_opts(dataset, model_dir))
    _rewrite(_file(dataset, 1), lambda t: {**t, "latents": np.full_like(t["latents"], np.nan)})
    _rewrite(_file(dataset, 2), lambda t: {**t, "latents": t["latents"][:, :100]})
    nan, shape = (latents_path(1, CAM), "latents"), (latents_path(2, CAM), "latents")
    assert {(p.file, p.field) for p in validate_dataset(dataset, check_videos=False)} == {nan, shape}
    seed = next(s for s in range(100) if sample_positions(3, 1, s) == {0})
    problems = validate_dataset(dataset, sample=1, seed=seed)
    assert [(p.file, p.field) for p in problems] == [shape] and "float16[5, 196, 32]" in problems[0].message
    result = CliRunner().invoke(app, ["validate", str(dataset), "--sample", "0.5", "--seed", "0"])
    assert result.exit_code == 1 and "episode_000002" in result.output


def test_other_stride_is_refused(dataset: Path, model_dir: Path) -> None:
    run_latents(_opts(dataset, model_dir))
    with pytest.raises(ValueError, match="stride"):
        run_latents(_opts(dataset, model_dir, stride=2))


def test_cli_refuses_without_weights_and_runs_with_random_weights(dataset: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["latents", str(dataset), "--no-progress"])
    assert refused.exit_code == 2 and "--model-dir" in refused.output
    ok = runner.invoke(app, ["latents", str(dataset), "--random-weights", "--no-progress", "--workers", "2"])
    assert ok.exit_code == 0, ok.output
    meta = LatentsMeta.load(dataset)
    assert meta.random_weights and meta.dim == 384 and "RANDOM WEIGHTS" in (meta.warning or "")
    assert validate_dataset(dataset, check_videos=False) == []


def test_model_dir_reencodes_a_cache_of_other_weights(dataset: Path, model_dir: Path) -> None:
    """Issue 15 item 3: `--model-dir` on a dataset cached with random weights encodes every file again."""
    first = run_latents(LatentsOptions(dataset=dataset, latents=LatentsConfig(random_weights=True), workers=2,
                                       progress=False))  # fmt: skip
    assert first.encoded == 3 and LatentsMeta.load(dataset).random_weights
    summary = run_latents(_opts(dataset, model_dir))
    assert (summary.encoded, summary.skipped, summary.replaced) == (3, 0, "random weights")
    meta = LatentsMeta.load(dataset)
    assert not meta.random_weights and meta.model_id == model_dir.name and meta.dim == 32
    assert meta.revision is not None and meta.revision.startswith("sha256:")
    encoder = load_encoder(LatentsConfig(model_dir=model_dir, device="cpu"))
    with safe_open(str(_file(dataset, 0)), framework="numpy") as f:
        latents, frames = f.get_tensor("latents"), f.get_tensor("frame_index")
    assert latents.shape == (5, 196, 32)  # the tiny model's width, not the random ViT-S/16's 384
    np.testing.assert_array_equal(latents, encode_video(dataset / video_path(0, CAM), frames, encoder, 2))
    again = run_latents(_opts(dataset, model_dir))  # the same weights: nothing to do
    assert (again.encoded, again.skipped, again.replaced) == (0, 3, None)


def test_a_missing_model_dir_is_refused_in_one_line(dataset: Path, tmp_path: Path) -> None:
    from schemas.errors import ExitCode, run_app

    argv = ["latents", str(dataset), "--model-dir", str(tmp_path / "nope"), "--no-progress"]
    code = run_app(app, "ingest", argv)
    assert code == ExitCode.REFUSED
    with pytest.raises(ValueError, match="nope does not exist"):
        run_latents(_opts(dataset, tmp_path / "nope"))
    assert not (dataset / "meta/latents.json").exists()
