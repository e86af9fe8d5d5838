"""`ingest run` refuses what would write outside its folder or over another dataset, says what discovery
left out, and stops (without recording rejects) on a bug or a missing dependency (issue 15 items 2, 4, 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest import job
from ingest.cli import app
from ingest.job import ConvertResult, Origin, RunOptions, check_origin, convert_one, run
from ingest.sources.base import SourceEpisodeRef
from ingest.stages.base import StageLog
from ingest.workdir import load_rejects
from schemas.errors import ExitCode, Failed, Refused, run_app
from schemas.pipelines import PipelinesFile
from tests.fixtures.egodex import write_dataset
from tests.fixtures.lerobot import interndata_spec, write_v3

PIPES = PipelinesFile.load(job.DEFAULT_PIPELINES)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_app(app, "ingest", argv)
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------- item 2: names and folders


@pytest.mark.parametrize("name", ["../escape", "/abs/olute", ".", "..", "a/b", "", "~x", "a\\b"])
def test_a_name_that_is_not_one_folder_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="one folder name"):
        RunOptions(source="egodex", input=tmp_path, output=tmp_path / "out", name=name)


@pytest.mark.parametrize("name", ["../escape", str(Path("/tmp") / "abs-escape-ei"), "."])
def test_cli_refuses_an_escaping_name_in_one_line_and_writes_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path / "in", 1, 12)
    out = tmp_path / "root" / "out"
    code, err = _cli(["run", "egodex", "-i", str(tmp_path / "in"), "-o", str(out), "--name", name], capsys)
    assert code == ExitCode.REFUSED and err.count("\n") == 1 and "one folder name" in err
    assert not out.exists() and not (tmp_path / "root" / "escape").exists()
    assert not Path("/tmp/abs-escape-ei").exists()


def test_a_card_of_another_section_is_refused_naming_both(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)  # a dataset moved without its .work folder: only the card is left
    (root / "meta/dataset_card.json").write_text(json.dumps({"source": "egodex"}))
    with pytest.raises(Refused) as e:
        check_origin(root, Origin(section="hot3d", input="/data/hot3d"))
    assert "section egodex" in str(e.value) and "section hot3d" in str(e.value) and "--name" in str(e.value)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_lerobot_inputs_get_their_own_folder_and_never_share_one(tmp_path: Path) -> None:
    first, second = tmp_path / "bucket_a", tmp_path / "bucket_b"
    write_v3(first, interndata_spec([12, 14]))
    write_v3(second, interndata_spec([15, 11, 13]))
    opts = {"source": "lerobot", "output": tmp_path / "out", "workers": 1, "progress": False}
    summary = run(RunOptions(input=first, **opts))
    assert summary.dataset_root == tmp_path / "out" / "interndata"  # the section, not a shared `lerobot`
    assert not (tmp_path / "out" / "lerobot").exists()
    before = (summary.dataset_root / "meta/episodes.jsonl").read_text()
    with pytest.raises(Refused) as e:  # same section, other input: it would mix two datasets
        run(RunOptions(input=second, **opts))
    assert str(first.resolve()) in str(e.value) and str(second.resolve()) in str(e.value)
    assert (summary.dataset_root / "meta/episodes.jsonl").read_text() == before
    other = run(RunOptions(input=second, name="bucket_b", **opts))
    assert other.dataset_root.name == "bucket_b" and other.total_episodes == 3
    again = run(RunOptions(input=first, **opts))  # the same input again: resumes, nothing new
    assert again.published == 0 and again.total_episodes == 2


# ----------------------------------------------------------------------------- item 8: bugs stop the run


class _Broken:
    name, layout = "broken", "anything"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def convert(self, ref, cfg):
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "is_bug"),
    [
        (TypeError("unsupported operand"), True),
        (AttributeError("'NoneType' object has no attribute 'shape'"), True),
        (ModuleNotFoundError("No module named 'smplx'"), True),
        (ValueError("bad quaternion"), False),
        (KeyError("transforms/leftHand"), False),
        (OSError("truncated file"), False),
    ],
)
def test_only_data_errors_become_rejects(
    exc: Exception, is_bug: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "get_source", lambda _: _Broken(exc))
    ref = SourceEpisodeRef(source_episode_id="ep0", files={"hdf5": "/in/0.hdf5"})
    result = convert_one(ref, PIPES.source("egodex"), tmp_path)
    assert (result.bug is not None) is is_bug and (result.reject is None) is is_bug
    assert type(exc).__name__ in (result.bug or result.reject.error) and "/in/0.hdf5" in (
        result.bug or result.reject.error
    )


def test_a_bug_stops_the_run_and_records_no_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = [SourceEpisodeRef(source_episode_id=f"ep{i}", files={"hdf5": f"/in/{i}.hdf5"}) for i in range(3)]
    results = [ConvertResult(source_episode_id="ep0", bug="/in/0.hdf5: TypeError: boom")]
    monkeypatch.setattr(job, "init_ray", lambda *a: (False, 1))
    monkeypatch.setattr(job, "shutdown_ray", lambda started: None)
    monkeypatch.setattr(job, "_convert_stream", lambda *a: iter(results))
    root = tmp_path / "ds"
    opts = RunOptions(source="egodex", input=tmp_path, output=tmp_path, name="ds", progress=False)
    with pytest.raises(Failed, match="TypeError: boom") as e:
        job._convert_and_publish(refs, opts, PIPES.source("egodex"), job.Publisher(root), StageLog())
    assert e.value.code == ExitCode.FAILED and load_rejects(root) == []


def test_a_bug_after_some_episodes_leaves_a_valid_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.validate import validate_dataset

    write_dataset(tmp_path / "in", 2, 40)

    def stream(todo, opts, cfg, work, workers):  # in-process: the first converts, the second hits a bug
        yield convert_one(todo[0], cfg, work)
        yield ConvertResult(source_episode_id=todo[1].source_episode_id, bug="/in/1.hdf5: TypeError: boom")

    monkeypatch.setattr(job, "init_ray", lambda *a: (False, 1))
    monkeypatch.setattr(job, "shutdown_ray", lambda started: None)
    monkeypatch.setattr(job, "_convert_stream", stream)
    with pytest.raises(Failed, match="1 episodes published before it"):
        run(RunOptions(source="egodex", input=tmp_path / "in", output=tmp_path / "out", progress=False))
    root = tmp_path / "out" / "egodex"
    assert validate_dataset(root) == [] and load_rejects(root) == []
    assert json.loads((root / "meta/info.json").read_text())["total_episodes"] == 1


def test_a_missing_dependency_is_refused_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.sources import egodex

    write_dataset(tmp_path / "in", 1, 12)
    monkeypatch.setattr(egodex.SOURCE, "requires", ("h5py", "no_such_module_ei_forge"), raising=False)
    monkeypatch.setattr(job, "init_ray", lambda *a: pytest.fail("Ray started"))
    code, err = _cli(["run", "egodex", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")], capsys)
    assert code == ExitCode.REFUSED and err.count("\n") == 1
    assert "no_such_module_ei_forge" in err and "make setup" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- item 4: nothing found


@pytest.mark.parametrize(
    ("source", "layout"),
    [("egodex", lambda p: None), ("agibot", lambda p: (p / "random" / "stuff").mkdir(parents=True))],
)
def test_a_run_that_finds_nothing_says_so_and_exits_2(
    source: str, layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    layout(tmp_path / "in")
    code, err = _cli(["run", source, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")], capsys)
    assert code == ExitCode.REFUSED and err.count("\n") == 1 and "no " in err and "expects" in err
    assert not (tmp_path / "out").exists()


def test_annotations_without_videos_are_counted_and_a_run_of_only_those_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.sources import epic
    from schemas.pipelines import EpicConfig
    from tests.fixtures import human

    fixture = human.write_epic(tmp_path / "in")
    cfg = EpicConfig.model_validate(human.section("epic"))
    assert epic.SOURCE.skipped(fixture.root, cfg) == ["P04_05_0 (P04_05)"]
    found = {r.source_episode_id for r in epic.SOURCE.discover(fixture.root, cfg)}
    assert found == {c.clip_id for c in fixture.clips}
    for video in fixture.root.rglob("*.MP4"):  # now no annotated video is there
        video.unlink()
    epic.clip_index.cache_clear()  # discovery caches the index per process
    pipelines = human.write_pipelines(tmp_path / "pipelines.yaml", "epic")
    argv = ["run", "epic", "-i", str(fixture.root), "-o", str(tmp_path / "o"), "--pipelines", str(pipelines)]
    code, err = _cli(argv, capsys)
    n = len(fixture.clips) + 1
    assert code == ExitCode.REFUSED and err.count("\n") == 1
    assert f"{n} annotated segments, none of whose videos is there" in err


# ----------------------------------------------------------------------------- item 9: duplicates


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_a_byte_identical_copy_is_recorded_as_a_duplicate_not_published_twice(tmp_path: Path) -> None:
    from ingest.validate import validate_dataset

    write_dataset(tmp_path / "in", 2, 24)
    folder = tmp_path / "in" / "test" / "basic_pick_place"
    for ext in ("hdf5", "mp4"):  # the same episode under a second name
        (folder / f"7.{ext}").write_bytes((folder / f"0.{ext}").read_bytes())
    opts = {"source": "egodex", "input": tmp_path / "in", "workers": 2, "progress": False}
    summary = run(RunOptions(output=tmp_path / "skip", **opts))
    root = summary.dataset_root
    assert (summary.published, summary.duplicates, summary.rejected) == (2, 1, 0)
    rejects = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["source_path"]) for r in rejects] == [("duplicate", "test/basic_pick_place/7")]
    assert "test/basic_pick_place/0" in rejects[0]["error"]
    assert validate_dataset(root) == []
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".work" not in p.parts}
    again = run(RunOptions(output=tmp_path / "skip", **opts))  # the re-run changes nothing
    assert (again.published, again.duplicates) == (0, 1)
    assert {p: p.read_bytes() for p in before} == before
    kept = run(RunOptions(output=tmp_path / "keep", duplicates="keep", **opts))
    assert (kept.published, kept.duplicates) == (3, 0)
