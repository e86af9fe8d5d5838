"""`ingest label --overrides`: a bad row is named by its line in the file, blank lines counted (issue 15
item 10: the line number disagreed with the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.label import read_overrides


def test_a_bad_row_is_named_by_its_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "overrides.csv"
    lines = ["source_episode_id,tier,reason", "", "ep/1,low,blurry", "", "", "ep/2,high,"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line (\d+): reason") as e:
        read_overrides(path)
    line = int(str(e.value).split(" line ")[1].split(":")[0])
    assert lines[line - 1] == "ep/2,high,"


def test_a_repeated_id_names_the_second_line(tmp_path: Path) -> None:
    path = tmp_path / "overrides.csv"
    header = "source_episode_id,tier,reason"
    lines = [header, "ep/1,low,blurry", '"ep/2",high,"two', 'lines"', "ep/1,high,sharp"]  # a quoted newline
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="overridden twice") as e:
        read_overrides(path)
    assert " line 5:" in str(e.value)
