"""`ingest run <format>`: the one pipelines.yaml section of that format that fits the input is used."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.job import SectionError, pick_section
from schemas.pipelines import PipelinesFile
from tests.fixtures.lerobot import interndata_spec, write_v3

PIPES = PipelinesFile.load(Path(__file__).parents[1] / "pipelines.yaml")
REAL = Path(__file__).parents[2] / "shared" / "realdata"


def test_a_section_name_is_used_as_is(tmp_path: Path) -> None:
    assert pick_section(PIPES, "lerobot_lda1b_sim", tmp_path) == "lerobot_lda1b_sim"


def test_interndata_input_picks_the_interndata_section(tmp_path: Path) -> None:
    write_v3(tmp_path / "bucket", interndata_spec())
    assert pick_section(PIPES, "lerobot", tmp_path / "bucket") == "interndata"


def test_no_fitting_section_is_refused_with_each_reason(tmp_path: Path) -> None:
    with pytest.raises(SectionError) as err:
        pick_section(PIPES, "lerobot", tmp_path)
    lerobot_sections = [n for n, c in PIPES.sources.items() if c.format == "lerobot"]
    assert all(f"{name}: " in str(err.value) for name in lerobot_sections)


def test_unknown_name_is_refused() -> None:
    with pytest.raises(SectionError, match="no source 'nonsense'"):
        pick_section(PIPES, "nonsense", Path("."))


@pytest.mark.parametrize(
    ("folder", "section"),
    [
        ("gr00t_demo_robot_sim.PickNPlace", "lerobot_gr00t_gr1"),
        ("lerobot_v21_lda1b_sim_pick_place", "lerobot_lda1b_sim"),
        ("lerobot_v21_unitree_g1_inspire", "lerobot_unitree_g1_inspire"),
    ],
)
def test_real_lerobot_samples_pick_their_section(folder: str, section: str) -> None:
    if not (REAL / folder).is_dir():
        pytest.skip(f"{REAL / folder} absent")
    assert pick_section(PIPES, "lerobot", REAL / folder) == section
