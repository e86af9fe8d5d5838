"""Instruction cleanup on narration styles of the real sources."""

import pytest

from ingest.stages.text import clean_instruction, imperative


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("#C C picks up a knife from the table", "pick up a knife from the table"),
        ("#C C washes the plate #unsure", "wash the plate"),
        ("#C C carries the box.", "carry the box"),
        ("#c c does the dishes", "do the dishes"),
        ("#C C presses the button", "press the button"),
        ("Put the spoon in the pot.", "put the spoon in the pot"),
        ("  take   plate ", "take plate"),
        ("basic_pick_and_place", "basic pick and place"),
        ("USB stick into the port", "USB stick into the port"),
        ("#unsure", ""),
    ],
)
def test_clean_instruction(raw: str, want: str) -> None:
    assert clean_instruction(raw) == want


def test_imperative_keeps_words_that_are_not_third_person() -> None:
    assert [imperative(w) for w in ("opens", "fixes", "focus", "toss", "go", "tries")] == [
        "open", "fix", "focus", "toss", "go", "try"
    ]  # fmt: skip


def test_noun_first_word_is_not_conjugated() -> None:
    assert clean_instruction("glasses on the shelf") == "glasses on the shelf"
