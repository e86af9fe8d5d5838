"""The Something-Something v2 reader (ingest/sources/ssv2.py): label JSONs over `<id>.webm` clips, class
folders of demo clips, bad records named; and the real labels and clips of ../shared/realdata/ssv2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.job import DEFAULT_PIPELINES
from ingest.sources import ssv2
from schemas.pipelines import PipelinesFile

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "ssv2"
LABELS = {"Closing something": "5", "Putting something on a surface": "100"}


def _cfg():
    return PipelinesFile.load(DEFAULT_PIPELINES).source("ssv2")


def _index(root: Path) -> dict[str, ssv2.ClipSpec]:
    ssv2.clip_index.cache_clear()
    return ssv2.clip_index(str(root.resolve()), _cfg().model_dump_json())


def _input(tmp_path: Path, records: list) -> Path:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "something-something-v2-labels.json").write_text(json.dumps(LABELS))
    (tmp_path / "labels" / "something-something-v2-validation.json").write_text(json.dumps(records))
    (tmp_path / "clips").mkdir()
    for name in ("17.webm", "task5/3.webm"):
        (tmp_path / "clips" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "clips" / name).write_bytes(b"")  # discovery only looks at names
    return tmp_path


def test_labelled_clips_and_class_folders_are_episodes(tmp_path: Path) -> None:
    records = [
        {"id": "17", "label": "putting a cup on a surface", "template": "Putting [something] on a surface",
         "placeholders": ["a cup"]},
        {"id": "18", "label": "closing a box", "template": "Closing [something]", "placeholders": ["a box"]},
    ]  # fmt: skip
    index = _index(_input(tmp_path, records))
    assert index["17"].text == "putting a cup on a surface" and index["17"].metrics == {"class_id": 100.0}
    assert index["18"].skipped  # its clip is not under the input (missing_videos: skip)
    demo = index["clips/task5/3.webm"]
    assert demo.text == "Closing something" and demo.metrics == {"class_id": 5.0} and demo.problem is None
    refs = ssv2.SOURCE.discover(tmp_path, _cfg())
    assert [r.source_episode_id for r in refs] == ["17", "clips/task5/3.webm"]


def test_a_record_without_label_is_named(tmp_path: Path) -> None:
    index = _index(_input(tmp_path, [{"id": "17", "template": "Closing [something]"}]))
    assert index["17"].problem == ("label", "Field required") and index["17"].where == "[0]"


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/realdata/ssv2")
def test_real_ssv2_clips_convert() -> None:
    cfg = _cfg()
    refs = ssv2.SOURCE.discover(REAL, cfg)
    assert [r.source_episode_id for r in refs] == [
        "data/human_demos/task5/0.webm",
        "data/human_demos/task41/1.webm",
    ]
    assert len(ssv2.SOURCE.skipped(REAL, cfg)) == 24777  # the validation split's clips are not in the sample
    eps = [ep for r in refs for ep in ssv2.SOURCE.convert(r, cfg)]
    assert [ep.meta.task_original for ep in eps] == [
        "Closing something",
        "Moving something away from the camera",
    ]
    assert [ep.meta.quality_metrics["class_id"] for ep in eps] == [5.0, 41.0]
    assert [ep.length for ep in eps] == [43, 48]  # 427x240 VP9 WebM, about 4.3 and 4.8 s
    assert not any(ep.meta.has_action for ep in eps)
