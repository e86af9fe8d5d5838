"""The selection language bounds nesting and length and raises nothing but `WhereError` (issue 15 item 6),
and a syntax error names the column of the text as typed."""

from __future__ import annotations

import random

import polars as pl
import pytest

from catalog.where import MAX_WHERE_DEPTH, Not, WhereError, compile_where, parse_where


@pytest.mark.parametrize(
    "text",
    [
        "not " * 995 + "has_action",  # RecursionError before
        "seconds > " + "-" * 2000 + "1",  # a long chain of unary minus
        "seconds > " + "- " * 1900 + "1",
        "(" * 300 + "has_action" + ")" * 300,  # the C parser's own limit
        "not (" * 400 + "has_action" + ")" * 400,
        " or ".join(["not " * 30 + "has_action"] * 40),
    ],
)
def test_deep_selections_are_one_where_error(text: str) -> None:
    with pytest.raises(WhereError) as e:
        parse_where(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


@pytest.mark.parametrize("depth", [8, 9])
def test_nesting_inside_the_bound_still_parses_and_evaluates(depth: int) -> None:
    assert depth + 3 < MAX_WHERE_DEPTH  # Expression > Not x depth > Name > Load
    tree = parse_where("not " * depth + "has_action")
    for _ in range(depth):
        assert isinstance(tree, Not)
        tree = tree.item
    df = pl.DataFrame({"has_action": [True, False, True]})
    got = df.filter(compile_where(parse_where("not " * depth + "has_action")))["has_action"].to_list()
    assert got == ([True, True] if depth % 2 == 0 else [False])


def test_random_token_soup_raises_only_where_error() -> None:
    rng = random.Random(0)
    tokens = [
        "not",
        "and",
        "or",
        "(",
        ")",
        "-",
        "+",
        "~",
        "==",
        "<",
        "in",
        "[",
        "]",
        ",",
        "seconds",
        "has_action",
        "caption",
        '"cup"',
        "1",
        "2.5",
        "true",
        "contains",
        "lambda",
        "**",
        ".",
        "__class__",
        "[0]",
        "if",
    ]
    parsed = 0
    for _ in range(3000):
        text = " ".join(rng.choice(tokens) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.05:
            text = "not " * rng.randint(50, 2000) + text
        try:
            parse_where(text)
            parsed += 1
        except WhereError as e:
            assert "\n" not in str(e)
    assert parsed > 0  # some of the soup is a valid selection: the bound does not refuse everything


def test_syntax_error_column_counts_in_the_text_as_typed() -> None:
    text = "   seconds > > 1"
    with pytest.raises(WhereError, match=r"syntax error at column (\d+)") as e:
        parse_where(text)
    column = int(str(e.value).split("column ")[1].split(":")[0])
    assert text[column - 1] == ">" and column == text.index("> >") + 3
