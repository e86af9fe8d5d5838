"""One error style for `ingest`, `catalog` and `train` (issue 15 item 5): every mistake of the issue's list is
one line on stderr, `<tool>: <problem>; <fix>`, no traceback, with the documented exit code (0 ok, 1 too many
rejects, 2 refused before starting, 3 failed during the run); `--debug` gives the traceback back."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.cli import app as catalog_app
from ingest.cli import app as ingest_app
from ingest.workdir import dataset_lock
from schemas.errors import ExitCode, Failed, Refused, describe, run_app
from tests.fixtures.egodex import write_dataset
from train.cli import app as train_app

APPS = {"ingest": ingest_app, "catalog": catalog_app, "train": train_app}
BIN = Path(sys.executable).parent


def _run(tool: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_app(APPS[tool], tool, argv)
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str, tool: str) -> str:
    assert err.count("\n") == 1 and err.startswith(f"{tool}"), err
    assert "Traceback" not in err and len(err) < 1200, err
    return err


def test_wrong_oxe_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in" / "some").mkdir(parents=True)
    code, err = _run("ingest", ["run", "oxe", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")], capsys)
    assert code == ExitCode.REFUSED and "features.json" in _one_line(err, "ingest")
    assert "expects an RLDS dataset folder" in err


def test_misspelled_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run("ingest", ["run", "egodx", "-i", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    assert code == ExitCode.REFUSED and "no source 'egodx'" in _one_line(err, "ingest") and "'egodex'" in err


def test_malformed_lerobot_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in" / "meta").mkdir(parents=True)
    (tmp_path / "in" / "meta" / "info.json").write_text('{"codebase_version": "v2.1", bad')
    code, err = _run(
        "ingest", ["run", "lerobot", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")], capsys
    )
    assert code == ExitCode.REFUSED and "unreadable JSON" in _one_line(err, "ingest")


def test_the_second_of_two_concurrent_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path / "in", 1, 12)
    with dataset_lock(tmp_path / "o" / "egodex"):
        code, err = _run(
            "ingest", ["run", "egodex", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")], capsys
        )
    assert code == ExitCode.REFUSED and "another `ingest run`" in _one_line(err, "ingest") and "wait" in err


def test_a_misspelled_option_and_a_missing_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run("ingest", ["run", "egodex", "--inptu", "x"], capsys)
    assert code == ExitCode.REFUSED and "No such option: --inptu" in _one_line(err, "ingest")
    code, err = _run("catalog", ["query"], capsys)
    assert (
        code == ExitCode.REFUSED and "--root" in _one_line(err, "catalog") and "catalog query --help" in err
    )


def test_catalog_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(
        "catalog", ["query", "--root", str(tmp_path), "--where", "not " * 995 + "has_action"], capsys
    )
    assert code == ExitCode.REFUSED and "nested more than" in _one_line(err, "catalog")
    code, err = _run("catalog", ["datasets", str(tmp_path)], capsys)
    assert code == ExitCode.REFUSED and "no dataset under" in _one_line(err, "catalog")


def test_train_eval_on_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run("train", ["eval", "--run", str(tmp_path / "nope")], capsys)
    assert code == ExitCode.REFUSED and str(tmp_path / "nope") in _one_line(err, "train")


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/d/x.parquet"), ExitCode.FAILED, "disk full"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/ds"), ExitCode.REFUSED, "writable"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/ds"), ExitCode.REFUSED, "writable"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/run.json"),
            ExitCode.REFUSED,
            "path",
        ),
        (Refused("--model-dir /m does not exist", "give a local folder"), ExitCode.REFUSED, "local folder"),
        (Failed("converting stopped", "run it again"), ExitCode.FAILED, "again"),
        (ModuleNotFoundError("No module named 'smplx'"), ExitCode.REFUSED, "install"),
        (KeyError("unknown model config 'huge'"), ExitCode.FAILED, "--debug"),
    ],
)
def test_every_exception_is_one_line_with_its_code(exc: Exception, code: ExitCode, words: str) -> None:
    got, line = describe(exc)
    assert got == code and words in line and "\n" not in line


def test_disk_full_during_a_run_exits_3_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import job

    write_dataset(tmp_path / "in", 1, 12)

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "egodex" / "x.parquet"))

    monkeypatch.setattr(job, "_convert_and_publish", full)
    code, err = _run(
        "ingest", ["run", "egodex", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")], capsys
    )
    assert code == ExitCode.FAILED and "disk full" in _one_line(err, "ingest") and "same command" in err


def test_debug_gives_the_traceback_back(tmp_path: Path) -> None:
    cmd = [str(BIN / "train"), "eval", "--run", str(tmp_path / "nope")]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == ExitCode.REFUSED and plain.stderr.count("\n") == 1
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


@pytest.mark.parametrize("damage", ["truncated", "payload"])
def test_train_eval_on_a_bad_checkpoint(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from tests.test_checkpoint_safety import _Payload

    run, marker = tmp_path / "run", tmp_path / "marker"
    run.mkdir()
    torch.save(
        {"step": torch.arange(1000), "x": _Payload(marker) if damage == "payload" else 1},
        run / "checkpoint.pt",
    )
    if damage == "truncated":
        (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:700])
    code, err = _run("train", ["eval", "--run", str(run)], capsys)
    assert code == ExitCode.REFUSED and "not a checkpoint of `train launch`" in _one_line(err, "train")
    assert not marker.exists()


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_train_launch_with_an_unknown_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from catalog.mixture import write_mixture
    from catalog.mixture_file import Mixture, MixtureEntry
    from tests.fixtures.training import training_root

    root = training_root(tmp_path, episodes=2, frames=40)
    capsys.readouterr()  # what building the root printed
    mixture = write_mixture(Mixture(name="m", entries=[MixtureEntry(name="hands", where="has_action")]),
                            tmp_path / "m.yaml")  # fmt: skip
    argv = ["launch", "--mixture", str(mixture), "--root", str(root), "--config", "huge", "--no-progress"]
    code, err = _run("train", [*argv, "--out", str(tmp_path / "run")], capsys)
    assert code == ExitCode.REFUSED and "unknown model config 'huge'" in _one_line(err, "train")


def test_a_cluster_that_refuses_the_driver_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Ray raises for a wrong address or a missing / wrong token (Ray's token authentication)."""
    import ray

    def refuse(**_: object) -> None:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    write_dataset(tmp_path / "in", 1, 20)
    argv = ["run", "egodex", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--address", "10.0.0.1:6"]
    code, err = _run("ingest", argv, capsys)
    assert code == ExitCode.REFUSED and "RAY_AUTH_TOKEN" in _one_line(err, "ingest") and "10.0.0.1:6 " in err


def test_validate_sample_that_is_neither_a_count_nor_a_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run("ingest", ["validate", str(tmp_path), "--sample", "2.5"], capsys)
    assert code == ExitCode.REFUSED and "--sample 2.5" in _one_line(err, "ingest")
