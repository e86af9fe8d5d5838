"""`ingest run epic`: EPIC-KITCHENS-100 action segments as action-free clips (fixtures with known answers,
the real annotation CSVs over stand-in videos, merging, bad inputs as named rejects, the job)."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import pytest

from ingest.convert.text import clean_instruction
from ingest.errors import EpisodeError
from ingest.job import RunOptions, run
from ingest.sources import epic
from ingest.sources.epic import EpicRow
from ingest.validate import validate_dataset
from schemas.pipelines import EpicConfig
from tests.fixtures import human

REAL = Path(__file__).resolve().parents[2] / "shared/realdata/epic_kitchens_100"
CAM = "observation.images.ego"


def _cfg(**kw) -> EpicConfig:
    return EpicConfig.model_validate(human.section("epic", **kw))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> human.Fixture:
    return human.write_epic(tmp_path_factory.mktemp("epic"), bad=True)


def _convert_all(root: Path, cfg: EpicConfig) -> tuple[dict, dict]:
    episodes, errors = {}, {}
    for ref in epic.SOURCE.discover(root, cfg):
        try:
            episodes |= {ep.meta.source_episode_id: ep for ep in epic.SOURCE.convert(ref, cfg)}
        except EpisodeError as e:
            errors[ref.source_episode_id] = e
    return episodes, errors


def test_segments_have_known_frames_captions_and_classes(fixture: human.Fixture) -> None:
    episodes, _ = _convert_all(fixture.root, _cfg())
    assert sorted(episodes) == sorted(c.clip_id for c in fixture.clips)  # P04_05 (not downloaded) skipped
    for clip in fixture.clips:
        assert human.episode_problems(episodes[clip.clip_id], clip) == [], clip.clip_id


def test_bad_inputs_are_named_rejects(fixture: human.Fixture) -> None:
    _, errors = _convert_all(fixture.root, _cfg())
    assert sorted(errors) == sorted(human.BAD_EPIC)
    for clip_id, text in human.BAD_EPIC.items():
        assert text in str(errors[clip_id]), clip_id
    assert errors["P02_03/P02_03_7"].field == "P02_03_7.start_timestamp"
    assert errors["P01_01/P01_01_9"].path.endswith("EPIC_100_validation.csv")


def test_overlap_reject_policy(fixture: human.Fixture) -> None:
    _, errors = _convert_all(fixture.root, _cfg(overlap="reject"))
    assert "overlaps P01_01_0" in str(errors["P01_01/P01_01_1"])  # 3.2 s starts before 3.5 s


def test_missing_video_rejected_when_configured(fixture: human.Fixture) -> None:
    _, errors = _convert_all(fixture.root, _cfg(missing_videos="reject"))
    assert "no video file for 'P04_05'" in str(errors["P04_05/P04_05_0"])


def _row(nid: str, start: float, stop: float, video: str = "P01_01") -> EpicRow:
    return EpicRow(
        narration_id=nid, video_id=video, start_timestamp=start, stop_timestamp=stop, narration=nid
    )


def test_merge_rule_by_hand() -> None:
    rows = [
        _row("a", 0.0, 0.5),  # short: takes in b (gap 0.3), then a+b = 1.2 s is long enough
        _row("b", 0.8, 1.2),
        _row("c", 1.3, 1.6),  # short, but d starts 0.9 s later: alone
        _row("d", 2.5, 2.9),  # short, e reversed: alone
        _row("e", 3.0, 2.95),
        _row("f", 3.1, 3.2),  # short, g is on another video: alone
        _row("g", 3.3, 4.0, video="P01_02"),
        _row("h", 5.0, 5.4),  # short, takes i (overlapping) and j, but not k (past max_episode_s)
        _row("i", 5.2, 5.5),
        _row("j", 5.9, 5.95),
        _row("k", 6.1, 9.5),
    ]
    cfg = _cfg(merge_below_s=1.0, merge_gap_s=0.5, max_episode_s=3.0)
    groups = epic.merge_rows(rows, cfg)
    assert [[r.narration_id for r in g] for g in groups] == [
        ["a", "b"], ["c"], ["d"], ["e"], ["f"], ["h", "i", "j"], ["k"], ["g"]
    ]  # fmt: skip
    longer = epic.merge_rows(rows, _cfg(merge_below_s=1.0, merge_gap_s=0.5, max_episode_s=5.0))
    assert [r.narration_id for r in longer[5]] == ["h", "i", "j", "k"]  # 4.5 s now fits
    assert epic.merge_rows(rows, _cfg(merge_below_s=0.0)) == [[r] for r in sorted(rows, key=_order)]


def _order(r: EpicRow) -> tuple:
    return (r.video_id, r.start_timestamp)


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:00:01.89", 1.89), ("01:02:03.5", 3723.5), ("0:00:07", 7.0)]
)
def test_hms_timestamps(text: str, seconds: float) -> None:
    assert epic.hms_seconds(text) == pytest.approx(seconds, abs=1e-9)


# ------------------------------------------------------------------------------------------ the job


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_job_writes_valid_actionless_dataset(fixture: human.Fixture, tmp_path: Path) -> None:
    pipelines = human.write_pipelines(tmp_path / "pipelines.yaml", "epic")
    opts = RunOptions(source="epic", input=fixture.root, output=tmp_path, workers=2, progress=False,
                      max_reject_ratio=1.0, pipelines=pipelines)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "epic"
    assert (summary.published, summary.rejected) == (len(fixture.clips), len(human.BAD_EPIC))
    assert summary.left_out == ["P04_05_0 (P04_05)"]  # annotated, video not downloaded: counted, not silent
    assert validate_dataset(root) == []
    by_id = {c.clip_id: c for c in fixture.clips}
    for line in (root / "meta/episodes.jsonl").read_text().splitlines():
        ep = json.loads(line)
        clip = by_id[ep["source_episode_id"]]
        assert (ep["caption"], ep["has_action"], ep["quality_tier"]) == (clip.caption, False, "actionless")
        video = root / f"videos/chunk-000/{CAM}/episode_{ep['episode_index']:06d}.mp4"
        assert human.output_frames(video) == clip.frames
    rejected = {
        json.loads(x)["error"].split(": ")[1] for x in (root / "meta/rejects.jsonl").read_text().splitlines()
    }
    assert {
        "P01_01_9.end",
        "P02_03_5.end",
        "P09_99_0.video_id",
        "P02_03_7.start_timestamp",
        "video",
    } == rejected


# --------------------------------------------------------------------------------------- real data


def _exact(hms: str) -> Fraction:
    h, m, s = hms.split(":")
    return Fraction(int(h) * 3600 + int(m) * 60) + Fraction(s)


def _real_rows(video_ids: set[str]) -> list[dict[str, str]]:
    with open(REAL / "EPIC_100_validation.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["video_id"] in video_ids]


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/epic_kitchens_100 is absent")
def test_real_annotations_over_stand_ins(tmp_path: Path) -> None:
    videos = human.write_epic_real(REAL, tmp_path)
    rows = _real_rows(set(videos))
    assert len(rows) == 4 + 3 + 14  # P03_26, P26_30, P02_13
    cfg = _cfg(merge_below_s=0.0)
    episodes, errors = _convert_all(tmp_path, cfg)  # every other video of the CSV: not downloaded, skipped
    assert errors == {}
    assert sorted(episodes) == sorted(f"{r['video_id']}/{r['narration_id']}" for r in rows)
    for r in rows:
        ep = episodes[f"{r['video_id']}/{r['narration_id']}"]
        assert ep.meta.task_original == r["narration"]
        assert ep.meta.caption == clean_instruction(r["narration"])
        assert ep.meta.quality_metrics["verb_class"] == float(r["verb_class"])
        assert ep.meta.quality_metrics["noun_class"] == float(r["noun_class"])
        v = videos[r["video_id"]]
        start, stop = _exact(r["start_timestamp"]), min(_exact(r["stop_timestamp"]), v.last)
        assert ep.videos[CAM].frame_indices.tolist() == human.expected_frames(v, start, stop)
    p26 = episodes["P26_30/P26_30_1"]
    assert (p26.meta.task_original, p26.meta.caption, p26.length) == (
        "pick up small pot",
        "pick up small pot",
        48,
    )


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/epic_kitchens_100 is absent")
def test_real_annotations_merge_short_neighbours(tmp_path: Path) -> None:
    human.write_epic_real(REAL, tmp_path, video_ids=("P02_13",))
    refs = epic.SOURCE.discover(tmp_path, _cfg(merge_below_s=1.0, merge_gap_s=0.5))
    rows = {r["narration_id"]: r for r in _real_rows({"P02_13"})}
    merged = [r.source_episode_id.split("/", 1)[1].split("+") for r in refs]
    assert sorted(n for group in merged for n in group) == sorted(rows)  # every segment exactly once
    for group in (g for g in merged if len(g) > 1):
        first = rows[group[0]]
        span = epic.hms_seconds(first["stop_timestamp"]) - epic.hms_seconds(first["start_timestamp"])
        assert span < 1.0, group  # only a short segment takes in its neighbour
