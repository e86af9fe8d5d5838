"""`ingest run ego4d`: narration windows and Goal-Step segments as action-free clips (fixtures with known
answers, the real Goal-Step annotations over stand-in videos, bad inputs as named rejects, the job)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ingest.convert.text import clean_instruction
from ingest.errors import EpisodeError
from ingest.job import RunOptions, run
from ingest.sources import clips, ego4d
from ingest.validate import validate_dataset
from schemas.pipelines import Ego4DConfig
from tests.fixtures import human

REAL = Path(__file__).resolve().parents[2] / "shared/realdata/ego4d_goalstep"
CAM = "observation.images.ego"


def _cfg(**kw) -> Ego4DConfig:
    return Ego4DConfig.model_validate(human.section("ego4d", **kw))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> human.Fixture:
    return human.write_ego4d(tmp_path_factory.mktemp("ego4d"), bad=True)


def _convert_all(fx: human.Fixture, cfg: Ego4DConfig) -> tuple[dict, dict]:
    episodes, errors = {}, {}
    for ref in ego4d.SOURCE.discover(fx.root, cfg):
        try:
            episodes |= {ep.meta.source_episode_id: ep for ep in ego4d.SOURCE.convert(ref, cfg)}
        except EpisodeError as e:
            errors[ref.source_episode_id] = e
    return episodes, errors


def test_clips_have_known_frames_captions_and_no_action(fixture: human.Fixture) -> None:
    episodes, _ = _convert_all(fixture, _cfg())
    assert sorted(episodes) == sorted(c.clip_id for c in fixture.clips)
    for clip in fixture.clips:
        assert human.episode_problems(episodes[clip.clip_id], clip) == [], clip.clip_id


def test_bad_inputs_are_named_rejects(fixture: human.Fixture) -> None:
    _, errors = _convert_all(fixture, _cfg())
    assert sorted(errors) == sorted(human.BAD_EGO4D)
    for clip_id, text in human.BAD_EGO4D.items():
        assert text in str(errors[clip_id])
    assert errors["vid-a/narration_pass_1/3"].field == "vid-a/narration_pass_1[3].timestamp"
    assert errors["vid-a/goalstep_valid/1"].field == "vid-a/goalstep_valid/1.end"
    assert errors["vid-broken/narration_pass_1/0"].path.endswith("vid-broken.mp4")
    assert errors["vid-unknown/narration_pass_1/0"].path.endswith("narration.json")


def test_videos_not_downloaded_are_skipped_unless_configured(fixture: human.Fixture) -> None:
    skip = {r.source_episode_id for r in ego4d.SOURCE.discover(fixture.root, _cfg())}
    assert not skip & set(fixture.skipped)
    ref = next(r for r in ego4d.SOURCE.discover(fixture.root, _cfg(missing_videos="reject"))
               if r.source_episode_id == "vid-c/narration_pass_1/0")  # fmt: skip
    with pytest.raises(EpisodeError, match="no video file for 'vid-c'"):
        ego4d.SOURCE.convert(ref, _cfg(missing_videos="reject"))


def test_window_and_second_pass(fixture: human.Fixture) -> None:
    cfg = _cfg(annotations=["narration"], narration_passes=["narration_pass_2"], window_before_s=0.5,
               window_after_s=1.0)  # fmt: skip
    refs = ego4d.SOURCE.discover(fixture.root, cfg)
    ref = next(r for r in refs if r.source_episode_id.startswith("vid-a/"))
    assert ref.source_episode_id == "vid-a/narration_pass_2/0"
    (ep,) = ego4d.SOURCE.convert(ref, cfg)
    a = fixture.videos["vid-a"]  # narration at 1.1 s: [0.6, 2.1] at 30 fps
    assert ep.videos[CAM].frame_indices.tolist() == human.expected_frames(a, Fraction("0.6"), Fraction("2.1"))
    assert ep.meta.caption == "take a cup"


@pytest.mark.parametrize(
    ("level", "want"),
    [("substep", {"vid-b/goalstep_valid/0.0": ("0.5", "1.5", "fill the kettle"),
                  "vid-b/goalstep_valid/0.1": ("1.6", "3.0", "switch on kettle")}),
     ("goal", {"vid-b/goalstep_valid/goal": ("0", None, "make tea")})],
)  # fmt: skip
def test_goalstep_levels(fixture: human.Fixture, level: str, want: dict) -> None:
    cfg = _cfg(annotations=["goalstep"], goalstep_level=level)
    refs = [r for r in ego4d.SOURCE.discover(fixture.root, cfg) if r.source_episode_id.startswith("vid-b")]
    assert [r.source_episode_id for r in refs] == list(want)
    b = fixture.videos["vid-b"]
    for ref in refs:
        (ep,) = ego4d.SOURCE.convert(ref, cfg)
        start, end, caption = want[ref.source_episode_id]
        end = b.last if end is None else end  # the goal ends at 8.0 s, the last frame is at 7.96 s
        assert ep.videos[CAM].frame_indices.tolist() == human.expected_frames(b, start, end)
        assert ep.meta.caption == caption


def test_long_clip_is_cut_into_parts(fixture: human.Fixture) -> None:
    cfg = _cfg(annotations=["goalstep"], max_episode_s=2.0)
    ref = next(
        r for r in ego4d.SOURCE.discover(fixture.root, cfg) if r.source_episode_id == "vid-b/goalstep_valid/1"
    )
    parts = ego4d.SOURCE.convert(ref, cfg)  # 3.0-7.9 s: 50 frames -> 20 + 20 + 10
    assert [p.meta.source_episode_id for p in parts] == [f"vid-b/goalstep_valid/1#{i}" for i in range(3)]
    assert [p.length for p in parts] == [20, 20, 10]
    frames = np.concatenate([p.videos[CAM].frame_indices for p in parts]).tolist()
    assert frames == human.expected_frames(fixture.videos["vid-b"], 3, "7.9")
    assert [p.meta.quality_metrics["start_s"] for p in parts] == pytest.approx([3.0, 5.0, 7.0])


def test_overlap_reject_policy(fixture: human.Fixture) -> None:
    cfg = _cfg(annotations=["goalstep"], goalstep_level="substep", overlap="reject")
    index = ego4d.clip_index(str(fixture.root.resolve()), cfg.model_dump_json())
    assert all(s.problem is None for s in index.values() if s.video_id == "vid-b")  # 0.5-1.5, 1.6-3.0
    cfg = _cfg(overlap="reject")  # narration 2-6 s and step 0.5-3 s of vid-b overlap
    index = ego4d.clip_index(str(fixture.root.resolve()), cfg.model_dump_json())
    assert index["vid-b/narration_pass_1/0"].problem[1].startswith("segment 2.000-6.000 s overlaps vid-b/")


def test_a_worker_converts_its_ref_without_the_annotation_files(tmp_path: Path) -> None:
    """Discovery parses the annotations once; each ref carries its clip (issue 17 item 5)."""
    fx = human.write_ego4d(tmp_path / "in")
    cfg = _cfg()
    refs = [r.model_dump_json() for r in ego4d.SOURCE.discover(fx.root, cfg)]  # what the workers receive
    for annotation in (fx.root / "v2/annotations").iterdir():
        annotation.unlink()
    episodes, _ = _convert_all(fx, cfg)  # the driver's cached index: same clips
    from ingest.sources.base import SourceEpisodeRef

    for raw in refs:
        ref = SourceEpisodeRef.model_validate_json(raw)
        (got,) = ego4d.SOURCE.convert(ref, cfg)
        want = episodes[ref.source_episode_id]
        assert (
            got.meta == want.meta
            and got.videos[CAM].frame_indices.tolist() == want.videos[CAM].frame_indices.tolist()
        )
    bare = SourceEpisodeRef.model_validate_json(refs[0]).model_copy(update={"record": None})
    with pytest.raises(EpisodeError, match="carries no clip"):
        ego4d.SOURCE.convert(bare, cfg)


@pytest.mark.parametrize(
    "text, message",
    [('{"vid-a": {}, ', "cannot read"), ("[]", "expected an object keyed by video_uid"), ('{"a" 1}', "':'")],
)
def test_narration_file_read_one_video_at_a_time_names_bad_json(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "narration.json").write_text(text)
    with pytest.raises(EpisodeError, match=message):
        ego4d.narration_specs(tmp_path / "narration.json", _cfg())
    one = '{"narration_pass_1": {"narrations": [{"timestamp_sec": 3, "narration_text": "#C C a"}]}}'
    (tmp_path / "narration.json").write_text(f' {{ "u1" : {one} , "u2": {{}} }}\n')
    (spec,) = ego4d.narration_specs(tmp_path / "narration.json", _cfg())
    assert (spec.clip_id, spec.start_s, spec.end_s, spec.text) == (
        "u1/narration_pass_1/0",
        1.0,
        5.0,
        "#C C a",
    )


def test_nearest_frame_ties_go_to_the_earlier_frame() -> None:
    times = np.arange(10) / 25  # 25 fps: 0.1 s is exactly between frames 2 and 3
    assert clips.nearest_frames(times, np.array([0.0, 0.1, 0.2, 0.3, 0.13, 5.0])).tolist() == [
        0,
        2,
        5,
        7,
        3,
        9,
    ]


# ------------------------------------------------------------------------------------------ the job


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_job_writes_valid_actionless_dataset(fixture: human.Fixture, tmp_path: Path) -> None:
    pipelines = human.write_pipelines(tmp_path / "pipelines.yaml", "ego4d")
    opts = RunOptions(source="ego4d", input=fixture.root, output=tmp_path, workers=2, progress=False,
                      max_reject_ratio=1.0, pipelines=pipelines)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "ego4d"
    assert (summary.published, summary.rejected) == (len(fixture.clips), len(human.BAD_EGO4D))
    assert validate_dataset(root) == []
    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    by_id = {c.clip_id: c for c in fixture.clips}
    for ep in episodes:
        clip = by_id[ep["source_episode_id"]]
        assert (ep["caption"], ep["has_action"], ep["quality_tier"]) == (clip.caption, False, "actionless")
        video = root / f"videos/chunk-000/{CAM}/episode_{ep['episode_index']:06d}.mp4"
        assert human.output_frames(video) == clip.frames
    rejects = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == len(human.BAD_EGO4D)
    card = json.loads((root / "meta/dataset_card.json").read_text())
    assert (card["embodiment_kind"], card["valid_state_dims"], card["valid_action_dims"]) == (
        "human_actionless",
        [],
        [],
    )


# --------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/ego4d_goalstep is absent")
@pytest.mark.parametrize("level", ["step", "substep"])
def test_real_goalstep_segments_over_stand_ins(tmp_path: Path, level: str) -> None:
    videos = human.write_ego4d_real(REAL, tmp_path)
    uid = human.EGO4D_REAL_VIDEOS[0]
    real = next(v for v in json.loads((REAL / "data/goalstep_valid.json").read_text())["videos"]
                if v["video_uid"] == uid)  # fmt: skip
    want = {f"{uid}/goalstep_valid/{k}": s for k, s in enumerate(real["segments"])}
    if level == "substep":
        want = {f"{i}.{j}": s for i, step in want.items() for j, s in enumerate(step["segments"])}
    cfg = _cfg(annotations=["goalstep"], goalstep_level=level)
    refs = ego4d.SOURCE.discover(tmp_path, cfg)  # only the stand-in's video is there: the rest is skipped
    assert sorted(r.source_episode_id for r in refs) == sorted(want)
    assert len(want) == (1 if level == "step" else 12)
    for ref in refs:
        (ep,) = ego4d.SOURCE.convert(ref, cfg)
        seg = want[ref.source_episode_id]
        assert ep.meta.task_original == seg["step_description"]
        assert ep.meta.caption == clean_instruction(seg["step_description"])
        frames = human.expected_frames(videos[uid], seg["start_time"], min(Fraction(str(seg["end_time"])),
                                                                            videos[uid].last))  # fmt: skip
        assert ep.videos[CAM].frame_indices.tolist() == frames
    if level == "substep":
        assert want[f"{uid}/goalstep_valid/0.0"]["step_description"] == "Spreads Flour on the worktable"
