"""Captioners (template, cached, vlm) and `ingest caption` on ingested datasets.

The VLM is a tiny random Qwen3-VL built from a config (tests/fixtures/qwen3vl.py): its text is nonsense,
its plumbing is real (frames in, text out, written to the dataset)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ingest.captions.base import CaptionRequest
from ingest.captions.cached import CachedCaptioner, load_captions
from ingest.captions.job import CaptionOptions, run_caption, work_file
from ingest.captions.template import TemplateCaptioner, template_meta
from ingest.captions.vlm import VlmCaptioner, decode_frames, first_line, frame_positions
from ingest.cli import app
from ingest.job import RunOptions, run
from ingest.validate import validate_dataset
from ingest.writer import finalize_meta, publish_episode, stage_episode
from schemas.captions import CaptionsConfig, VlmConfig
from schemas.episode import EpisodeMeta
from schemas.lerobot import data_path, video_path
from tests.fixtures.configs import SRC_CFG, VCFG, make_source
from tests.fixtures.egodex import decode_frame_index, write_dataset
from tests.fixtures.qwen3vl import save_tiny_qwen3vl
from tests.test_writer import make_episode

EGO = "observation.images.ego"
IDS = ["test/add_remove_lid/0", "test/basic_pick_place/0", "test/basic_pick_place/1"]  # discovery order
TEMPLATE = {
    "test/basic_pick_place/0": "do the basic pick place task forwards",
    "test/add_remove_lid/0": "do the add remove lid task forwards",
    "test/basic_pick_place/1": "do the basic pick place task forwards",
}


def _req(sid: str, task: str, caption: str = "old", frames: np.ndarray | None = None) -> CaptionRequest:
    return CaptionRequest(sid, task, caption, "source", frames)


def _episodes(root: Path) -> list[dict]:
    return [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]


def _tasks(root: Path) -> list[str]:
    return [json.loads(x)["task"] for x in (root / "meta/tasks.jsonl").read_text().splitlines()]


def _task_column(root: Path, episode_index: int) -> set[int]:
    return set(pq.read_table(root / data_path(episode_index))["task_index"].to_pylist())


def _assert_tasks_consistent(root: Path) -> None:
    """Each episode's task_index column is its caption's tasks.jsonl row."""
    tasks = _tasks(root)
    for ep in _episodes(root):
        assert _task_column(root, ep["episode_index"]) == {tasks.index(ep["caption"])}


# ----------------------------------------------------------------------------- captioners, no dataset


def test_template_captioner_cleans_source_text_else_caption() -> None:
    out = TemplateCaptioner().caption(
        [
            _req("a", "#C C picks up the cup."),
            _req("b", "", "Interact with the mug"),
            _req("c", "#unsure", ""),
        ]
    )
    assert [(r.caption, r.caption_source, r.fallback) for r in out] == [
        ("pick up the cup", "template", False),
        ("interact with the mug", "template", False),
        ("", "source", True),  # nothing to clean: the current caption stays
    ]


def test_template_meta_keeps_task_original() -> None:
    meta = EpisodeMeta(source_episode_id="x", embodiment="human_ego", has_action=False,
                       quality_tier="actionless", caption="Kneads the dough.", caption_source="source",
                       task_original="Kneads the dough.")  # fmt: skip
    new = template_meta(meta)
    assert (new.caption, new.caption_source, new.task_original) == (
        "knead the dough", "template", "Kneads the dough."
    )  # fmt: skip
    assert (
        EpisodeMeta.model_validate({**new.model_dump(), "caption_source": "cached"}).caption_source
        == "cached"
    )
    with pytest.raises(ValueError, match="caption_source"):
        EpisodeMeta.model_validate({**new.model_dump(), "caption_source": "human"})


def test_cached_file_rows_cleaned_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"source_episode_id": "a", "caption": "Open the drawer."}\n\n'
                    '{"source_episode_id": "b", "caption": "fold the towel"}\n')  # fmt: skip
    captioner = CachedCaptioner(path)
    out = captioner.caption([_req("a", "x"), _req("zz", "y", "kept text")])
    assert [(r.caption, r.caption_source, r.fallback) for r in out] == [
        ("open the drawer", "cached", False), ("kept text", "source", True)
    ]  # fmt: skip
    captioner.check_known({"a", "b", "c"})
    with pytest.raises(ValueError, match=r"1 source_episode_id\(s\) not in the dataset, e.g. 'b'"):
        captioner.check_known({"a"})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"source_episode_id": "a"}\n', r"c.jsonl:1: not a caption row"),
        ('{"source_episode_id": "a", "caption": "x"}\n{"source_episode_id": "a", "caption": "y"}\n',
         r"c.jsonl:2: 'a' given twice"),
        ('{"source_episode_id": "a", "caption": "#unsure"}\n', r"c.jsonl:1: caption '#unsure' has no"),
    ],
)  # fmt: skip
def test_cached_file_errors_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "c.jsonl").write_text(text)
    with pytest.raises(ValueError, match=error):
        load_captions(tmp_path / "c.jsonl")


def test_frame_positions_and_answer_line() -> None:
    assert frame_positions(14, 4).tolist() == [0, 4, 9, 13]
    assert frame_positions(2, 4).tolist() == [0, 1] and frame_positions(0, 4).tolist() == []
    assert first_line('\n  Instruction: "pick up the cup"\nbecause ...') == "pick up the cup"


# ----------------------------------------------------------------------------- the tiny Qwen3-VL


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_qwen3vl(tmp_path_factory.mktemp("models") / "qwen3vl-tiny")


@pytest.fixture(scope="module")
def vlm(qwen_dir: Path) -> VlmCaptioner:
    return VlmCaptioner(VlmConfig(model_dir=qwen_dir, max_new_tokens=8))


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 48, 64, 3), dtype=np.uint8)


def test_vlm_inputs_expand_one_pad_per_merged_patch(vlm: VlmCaptioner) -> None:
    batch = [_req("a", "put carrot on plate", frames=_frames(4, 0)), _req("b", "", frames=_frames(2, 1))]
    inputs = vlm.inputs(batch)
    # 48x64 -> 64x64: 4x4 patches of 16 px = 16 patches per image, merged 2x2 into 4 image tokens
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]] * 6
    assert tuple(inputs["pixel_values"].shape) == (6 * 16, 3 * 2 * 16 * 16)
    pads = (inputs["input_ids"] == vlm.model.config.image_token_id).sum(1).tolist()
    assert pads == [4 * 4, 2 * 4] and inputs["mm_token_type_ids"].sum(1).tolist() == pads
    assert inputs["attention_mask"][1, 0] == 0  # left padding: the shorter prompt starts later


def test_vlm_batched_equals_one_by_one_and_falls_back(vlm: VlmCaptioner, monkeypatch) -> None:
    batch = [_req("a", "put carrot on plate", frames=_frames(4, 0)), _req("b", "", frames=_frames(2, 1))]
    together = vlm.caption(batch)
    alone = [vlm.caption([r])[0] for r in batch]
    assert [r.caption for r in together] == [r.caption for r in alone]
    assert all(r.caption and r.caption_source == "vlm:qwen3vl-tiny" and not r.fallback for r in together)
    monkeypatch.setattr(vlm, "generate", lambda b: ["", "Instruction: Opens the drawer."])
    empty, answered = vlm.caption([_req("a", "Put the carrot on the plate."), _req("b", "")])
    assert (empty.caption, empty.caption_source, empty.fallback) == (
        "put the carrot on the plate",
        "template",
        True,
    )
    assert (answered.caption, answered.caption_source) == ("open the drawer", "vlm:qwen3vl-tiny")


def test_vlm_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--model-dir"):
        VlmCaptioner(VlmConfig())
    with pytest.raises(FileNotFoundError, match="no config.json"):
        VlmCaptioner(VlmConfig(model_dir=tmp_path))


# ----------------------------------------------------------------------------- on ingested datasets


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    tmp = tmp_path_factory.mktemp("captions")
    write_dataset(tmp / "in", 3, 40)  # 40 frames at 30 Hz -> 14 frames at 10 Hz
    run(RunOptions(source="egodex", input=tmp / "in", output=tmp / "out", workers=2, progress=False))
    return tmp / "out" / "egodex"


@pytest.fixture
def dataset(ingested: Path, tmp_path: Path) -> Path:
    shutil.copytree(ingested, tmp_path / "egodex")
    return tmp_path / "egodex"


def _opts(root: Path, **captions) -> CaptionOptions:
    return CaptionOptions(dataset=root, captions=CaptionsConfig(**captions), workers=2, progress=False)


@pytest.mark.usefixtures("ray_local")
def test_run_writes_template_captions_and_recaption_is_a_no_op(dataset: Path) -> None:
    eps = _episodes(dataset)
    assert [e["source_episode_id"] for e in eps] == IDS
    assert {e["source_episode_id"]: e["caption"] for e in eps} == TEMPLATE
    assert all(e["caption_source"] == "template" and e["task_original"].startswith("Do the ") for e in eps)
    assert _tasks(dataset) == ["do the add remove lid task forwards", "do the basic pick place task forwards"]
    _assert_tasks_consistent(dataset)
    summary = run_caption(_opts(dataset))
    assert (summary.captioned, summary.files_changed) == (3, 0)


@pytest.mark.usefixtures("ray_local")
def test_cached_captions_written_kept_and_twice_unchanged(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    rows = [{"source_episode_id": IDS[1], "caption": "Remove the lid."},
            {"source_episode_id": IDS[2], "caption": "place the cup"}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = run_caption(_opts(dataset, captioner="cached", captions_file=path))
    assert (summary.captioned, summary.kept, summary.files_changed) == (2, [IDS[0]], 2)  # ep 0 unchanged
    eps = _episodes(dataset)
    assert [(e["caption"], e["caption_source"]) for e in eps] == [
        (TEMPLATE[IDS[0]], "template"), ("remove the lid", "cached"), ("place the cup", "cached")
    ]  # fmt: skip
    assert [e["task_original"] for e in eps] == [
        "Do the add remove lid task forwards.", "Do the basic pick place task forwards.",
        "Do the basic pick place task forwards.",
    ]  # fmt: skip
    assert _tasks(dataset) == [TEMPLATE[IDS[0]], "remove the lid", "place the cup"]
    _assert_tasks_consistent(dataset)
    assert validate_dataset(dataset) == []
    assert run_caption(_opts(dataset, captioner="cached", captions_file=path)).files_changed == 0
    path.write_text(json.dumps({"source_episode_id": "test/nope/9", "caption": "x y"}) + "\n")
    with pytest.raises(ValueError, match="'test/nope/9'"):
        run_caption(_opts(dataset, captioner="cached", captions_file=path))


def test_annotations_survive_recaptioning(tmp_path: Path) -> None:
    """Per-frame subtask text (`annotation.*`) keeps its texts when the caption rows move."""
    src = make_source(tmp_path / "src.mp4", 30)
    first, second = make_episode(4, "make tea", src, 0), make_episode(3, "open the door", src, 1)
    first.meta.task_original, second.meta.task_original = "Pours the water.", "Opening the door"
    first.annotations = {"annotation.subtask": ["grasp", "grasp", "make tea", "pour"]}
    second.annotations = {"annotation.subtask": ["", "", ""]}
    root, tasks, start = tmp_path / "ds", {}, 0
    for i, ep in enumerate((first, second)):
        stage_episode(ep, tmp_path / f"s{i}", VCFG)
        start += publish_episode(tmp_path / f"s{i}", root, i, start, tasks).record.length
    finalize_meta(root, "egodex", SRC_CFG, [])
    summary = run_caption(_opts(root))
    assert summary.files_changed == 2
    table = _tasks(root)
    assert table == ["pour the water", "grasp", "make tea", "pour", "open the door", ""]
    sub = pq.read_table(root / data_path(0))["annotation.subtask"].to_pylist()
    assert [table[k] for k in sub] == ["grasp", "grasp", "make tea", "pour"]
    _assert_tasks_consistent(root)
    assert validate_dataset(root) == [] and run_caption(_opts(root)).files_changed == 0


@pytest.mark.timeout(900)  # Ray + a tiny Qwen3-VL twice: about a minute idle, several on a busy machine
@pytest.mark.usefixtures("ray_local")
def test_vlm_end_to_end_frames_in_text_out(
    dataset: Path, qwen_dir: Path, vlm: VlmCaptioner, monkeypatch
) -> None:
    opts = _opts(dataset, captioner="vlm", vlm=VlmConfig(model_dir=qwen_dir, max_new_tokens=8, image_size=64))
    summary = run_caption(opts)
    assert (summary.captioned, summary.reused, summary.fallbacks, summary.files_changed) == (3, 0, 0, 3)
    eps = _episodes(dataset)
    assert all(e["caption_source"] == "vlm:qwen3vl-tiny" for e in eps)
    assert eps[0]["task_original"] == "Do the add remove lid task forwards."
    _assert_tasks_consistent(dataset)
    assert validate_dataset(dataset) == []
    # frames in: the frames the job decodes are the episode's first-to-last frames (the fixture paints each
    # source frame's index into it; output frame k shows source frame 3k), 64 px on the long side
    seen = []
    monkeypatch.setattr(vlm, "generate", _spy(vlm.generate, seen))
    for ep in eps:
        positions = frame_positions(ep["length"], 4)
        frames = decode_frames(dataset / video_path(ep["episode_index"], EGO), positions, 64)
        assert frames.shape == (4, 36, 64, 3)
        assert [decode_frame_index(f) for f in frames] == (3 * positions).tolist()
        # text out: the Ray path wrote what the model says for these frames and this source text
        (direct,) = vlm.caption([_req(ep["source_episode_id"], ep["task_original"], frames=frames)])
        assert ep["caption"] == direct.caption
    assert seen == [(4, 4 * 8)] * 3  # 4 images per call, each 36x64 -> 32x64 px = 2x4 patches of 16 px
    again = run_caption(opts)
    assert (again.reused, again.files_changed) == (3, 0)
    shutil.rmtree(work_file(dataset, opts.captions.vlm).parent)
    assert run_caption(opts).files_changed == 0  # greedy: generated again, the same captions


def _spy(generate, seen: list):
    def wrapped(batch):
        inputs = wrapped.owner.inputs(batch)
        seen.append((len(inputs["image_grid_thw"]), int(inputs["pixel_values"].shape[0])))
        return generate(batch)

    wrapped.owner = generate.__self__
    return wrapped


@pytest.mark.usefixtures("ray_local")
def test_cli_caption_exit_codes(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"source_episode_id": IDS[0], "caption": "Wipe the table."}) + "\n")
    args = ["caption", str(dataset), "--captioner", "cached", "--captions", str(path), "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "1 of 3 episodes captioned by cached" in res.output and "1 files changed" in res.output
    assert _episodes(dataset)[0]["caption"] == "wipe the table"
    res = runner.invoke(app, ["caption", str(dataset), "--captioner", "vlm", "--no-progress"])
    assert res.exit_code == 2 and "--model-dir" in res.output
    res = runner.invoke(app, ["caption", str(dataset), "--captioner", "gpt", "--no-progress"])
    assert res.exit_code == 2 and "captioner" in res.output
