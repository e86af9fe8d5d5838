"""`schemas/catalog.py` and `catalog/where.py`: polars schemas, the selection parser, the tier table."""

from __future__ import annotations

import polars as pl
import pytest
from pydantic import TypeAdapter

from catalog.where import BoolOp, Cmp, Func, In, Not, WhereError, compile_where, parse_where
from schemas.canonical import dimension_names
from schemas.catalog import (
    TIER_TASKS,
    CatalogDataset,
    CatalogEpisode,
    allowed_tasks,
    dataset_schema,
    dims_bitstring,
    dims_from_bitstring,
    episode_schema,
    polars_schema,
)


def test_polars_schemas_are_derived_from_the_models_with_their_types() -> None:
    """What the catalog's Parquet holds, column by column, as the models declare it."""
    ep, ds = episode_schema(), dataset_schema()
    assert list(ep) == list(CatalogEpisode.model_fields) and list(ds) == list(CatalogDataset.model_fields)
    assert ep["category"] == pl.Enum(["real_robot", "sim_robot", "human_action", "human_actionless"])
    assert ep["quality_tier"] == pl.Enum(["high", "low", "actionless"])
    assert (ep["episode_index"], ep["seconds"], ep["has_action"], ep["caption"]) == (
        pl.Int64,
        pl.Float64,
        pl.Boolean,
        pl.String,
    )
    assert (ds["robot_type"], ds["cameras"], ds["reference_frame"]) == (
        pl.String,
        pl.List(pl.String),
        pl.Enum(["camera", "base"]),
    )
    assert ep == polars_schema(CatalogEpisode) and ds == polars_schema(CatalogDataset)


def row(**changes: object) -> dict:
    bits = "1" * 73 + "0" * 73
    base = {
        "dataset": "d",
        "episode_index": 0,
        "source_episode_id": "s/0",
        "source": "egodex",
        "embodiment": "human_ego",
        "category": "human_action",
        "quality_tier": "high",
        "has_action": True,
        "length": 20,
        "seconds": 2.0,
        "caption": "pick the cup",
        "caption_source": "source",
        "task": "t",
        "valid_state_dims": bits,
        "valid_action_dims": bits,
        "latents_present": False,
        "path": "d/data/chunk-000/episode_000000.parquet",
    }
    return {**base, **changes}


def test_rows_survive_a_polars_round_trip() -> None:
    rows = [CatalogEpisode(**row(episode_index=i, quality_tier=t)) for i, t in enumerate(["high", "low"])]
    df = pl.DataFrame([r.model_dump() for r in rows], schema=episode_schema())
    assert TypeAdapter(list[CatalogEpisode]).validate_python(df.to_dicts()) == rows
    with pytest.raises(ValueError, match="valid_state_dims"):
        CatalogEpisode(**row(valid_state_dims="1" * 145))
    with pytest.raises(ValueError, match="extra"):
        CatalogEpisode(**row(colour="red"))


def test_dims_bitstring_round_trip() -> None:
    names = dimension_names()
    some = [names[0], names[9], names[145]]
    bits = dims_bitstring(some)
    assert len(bits) == 146 and bits.count("1") == 3 and bits[9] == "1"
    assert dims_from_bitstring(bits) == some
    with pytest.raises(ValueError, match="unknown canonical dimension"):
        dims_bitstring(["left.tail"])


def test_tier_table_is_the_contracts() -> None:
    assert TIER_TASKS["high"] == ("policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting")
    assert "policy" not in TIER_TASKS["low"] and "policy" in allowed_tasks("low", "post_training")
    assert allowed_tasks("actionless", "post_training") == ("visual_forecasting",)


def test_parse_tree() -> None:
    tree = parse_where('category == "real_robot" and (quality_tier in ["high"] or not has_action)')
    assert tree == BoolOp(
        "and",
        (
            Cmp("category", "==", "real_robot"),
            BoolOp("or", (In("quality_tier", ("high",)), Not(Cmp("has_action", "==", True)))),
        ),
    )
    assert parse_where("3 < seconds") == Cmp("seconds", ">", 3)
    assert parse_where("length > episode_index") == Cmp("length", ">", other="episode_index")
    assert parse_where('action_valid("left.position")') == Func(
        "action_valid", "valid_action_dims", (0, 1, 2)
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "open('/etc/passwd')",
        "caption.upper() == 'X'",
        "[c for c in caption]",
        "seconds + 1 > 2",
        "has_action == 1",
        "quality_tier > 'high'",
        "exec('1')",
        "caption[0] == 'p'",
        "x" * 5000,
        "dataset == __name__",
        'state_valid("tail")',
        "matches(caption, '(')",
    ],
)
def test_parser_rejects(text: str) -> None:
    with pytest.raises(WhereError):
        parse_where(text)


def test_compiled_filters_against_python() -> None:
    """Each compiled selection keeps exactly the rows that the same rule written in python keeps."""
    state_bits = ["1" * 146, "0" * 9 + "1" + "0" * 136, "0" * 146]
    rows = [
        row(episode_index=i, seconds=s, caption=c, valid_state_dims=b, has_action=a)
        for i, (s, c, b, a) in enumerate(
            zip(
                [1.0, 2.5, 4.0],
                ["pick cup", "Open lid", "pour"],
                state_bits,
                [True, False, True],
                strict=True,
            )
        )
    ]
    df = pl.DataFrame(rows, schema=episode_schema())
    cases = {
        "seconds >= 2.5": [1, 2],
        'contains(caption, "cup") or endswith(caption, "lid")': [0, 1],
        'matches(caption, "^[A-Z]")': [1],
        'state_valid("left.gripper")': [0, 1],
        'state_valid("left.position")': [0],
        "not has_action and seconds < 3": [1],
        "": [0, 1, 2],
        'startswith(caption, "p") and seconds != 4': [0],
    }
    for text, want in cases.items():
        assert df.filter(compile_where(parse_where(text)))["episode_index"].to_list() == want, text
