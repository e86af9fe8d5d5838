"""`ingest run videos`: a folder of the user's videos with an optional captions CSV, as action-free clips."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ingest.errors import EpisodeError
from ingest.job import RunOptions, run
from ingest.sources import videos
from ingest.validate import validate_dataset
from schemas.pipelines import VideosConfig
from tests.fixtures import human

CAM = "observation.images.ego"


def _cfg(**kw) -> VideosConfig:
    return VideosConfig.model_validate(human.section("videos", **kw))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> human.Fixture:
    return human.write_videos(tmp_path_factory.mktemp("videos"), bad=True)


def _convert_all(root: Path, cfg: VideosConfig) -> tuple[dict, dict]:
    episodes, errors = {}, {}
    for ref in videos.SOURCE.discover(root, cfg):
        try:
            episodes |= {ep.meta.source_episode_id: ep for ep in videos.SOURCE.convert(ref, cfg)}
        except EpisodeError as e:
            errors[ref.source_episode_id] = e
    return episodes, errors


def test_rows_and_whole_videos_have_known_frames_and_captions(fixture: human.Fixture) -> None:
    episodes, _ = _convert_all(fixture.root, _cfg())
    assert sorted(episodes) == sorted(c.clip_id for c in fixture.clips)
    for clip in fixture.clips:
        assert human.episode_problems(episodes[clip.clip_id], clip) == [], clip.clip_id


def test_bad_rows_and_videos_are_named_rejects(fixture: human.Fixture) -> None:
    _, errors = _convert_all(fixture.root, _cfg())
    assert sorted(errors) == sorted(human.BAD_VIDEOS)
    for clip_id, text in human.BAD_VIDEOS.items():
        assert text in str(errors[clip_id]), clip_id
    assert errors["kitchen_tour@row8"].field == "row 8.start"
    assert errors["kitchen_tour.mp4@row4"].field == "row 4.start"


def test_overlaps_allowed_when_configured(fixture: human.Fixture) -> None:
    episodes, errors = _convert_all(fixture.root, _cfg(overlap="allow"))
    assert "kitchen_tour.mp4@row4" not in errors
    ep = episodes["kitchen_tour.mp4@row4"]
    assert ep.videos[CAM].frame_indices.tolist() == human.expected_frames(
        fixture.videos["kitchen_tour.mp4"], "3.5", 5
    )
    assert (ep.meta.caption, ep.meta.caption_source) == ("overlap", "source")


def test_no_csv_every_video_is_one_episode_cut_into_parts(tmp_path: Path) -> None:
    a = human._standin(tmp_path, "a.mp4", "a.mp4", Fraction(5), Fraction(30))
    b = human._standin(
        tmp_path, "deep/er/b_roll-take2.MOV", "deep/er/b_roll-take2.MOV", Fraction(2), Fraction(20)
    )
    cfg = _cfg(max_episode_s=2.0)
    episodes, errors = _convert_all(tmp_path, cfg)
    assert errors == {}
    assert sorted(episodes) == ["a.mp4#0", "a.mp4#1", "a.mp4#2", "deep/er/b_roll-take2.MOV"]
    frames = [f for k in range(3) for f in episodes[f"a.mp4#{k}"].videos[CAM].frame_indices.tolist()]
    assert frames == human.expected_frames(a, 0, a.last)  # 0-4.967 s: 50 frames = 20 + 20 + 10
    assert [episodes[f"a.mp4#{k}"].length for k in range(3)] == [20, 20, 10]
    whole = episodes["deep/er/b_roll-take2.MOV"]
    assert whole.videos[CAM].frame_indices.tolist() == human.expected_frames(b, 0, b.last)
    assert (whole.meta.caption, whole.meta.caption_source, whole.meta.task_original) == (
        "b roll take2", "template", "b_roll-take2")  # fmt: skip


@pytest.mark.parametrize(
    ("cell", "want"),
    [
        ("clips/pour water.mov", "clips/pour water.mov"),
        ("./clips/pour water.mov", "clips/pour water.mov"),
        ("pour water.mov", "clips/pour water.mov"),  # a unique file name
        ("garden", "garden.mkv"),  # a unique stem
        ("same", None),  # two stems `same`
        ("nope.mp4", None),
    ],
)
def test_resolve_video_cell(cell: str, want: str | None) -> None:
    files = {rel: Path(rel) for rel in ("clips/pour water.mov", "garden.mkv", "x/same.mp4", "y/same.mp4")}
    assert videos.resolve_video(cell, files) == want


def test_csv_with_unknown_columns_refuses_the_run(tmp_path: Path) -> None:
    (tmp_path / "captions.csv").write_text("file,from,to,text\na.mp4,0,1,hi\n")
    with pytest.raises(EpisodeError, match="expected columns"):
        videos.SOURCE.discover(tmp_path, _cfg())


# ------------------------------------------------------------------------------------------ the job


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_job_writes_valid_actionless_dataset(fixture: human.Fixture, tmp_path: Path) -> None:
    pipelines = human.write_pipelines(tmp_path / "pipelines.yaml", "videos")
    opts = RunOptions(source="videos", input=fixture.root, output=tmp_path, workers=2, progress=False,
                      max_reject_ratio=1.0, pipelines=pipelines)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "videos"
    assert (summary.published, summary.rejected) == (len(fixture.clips), len(human.BAD_VIDEOS))
    assert validate_dataset(root) == []
    by_id = {c.clip_id: c for c in fixture.clips}
    for line in (root / "meta/episodes.jsonl").read_text().splitlines():
        ep = json.loads(line)
        clip = by_id[ep["source_episode_id"]]
        # the job's caption stage may relabel `caption_source`; the text and the action-free keys stay
        assert (ep["caption"], ep["task_original"], ep["has_action"], ep["quality_tier"]) == (
            clip.caption, clip.task_original, False, "actionless")  # fmt: skip
        video = root / f"videos/chunk-000/{CAM}/episode_{ep['episode_index']:06d}.mp4"
        assert human.output_frames(video) == clip.frames
    tasks = [json.loads(x)["task"] for x in (root / "meta/tasks.jsonl").read_text().splitlines()]
    assert sorted(tasks) == sorted(c.caption for c in fixture.clips)
