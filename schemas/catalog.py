"""The catalog's rows, the selection language and the mixture file (issue 4; CONTRACT.md section 8).

- `CatalogEpisode` / `CatalogDataset`: one row of `ROOT/catalog/episodes.parquet` / `datasets.parquet`,
  each with its polars schema (`episode_schema`, `dataset_schema`) derived from the model (`polars_schema`).
- `parse_where`: the selection language (`category == "human_action" and seconds > 2`), parsed with
  `ast.parse` and a whitelist of node types: user text is never evaluated. It returns a small tree
  (`Where`) that `catalog/query.py` compiles to polars expressions.
- `Mixture`: the YAML file `catalog mixture` writes and `train launch` reads; `TIER_TASKS` is the table
  of what each quality tier may train, which a mixture may narrow but never widen.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.canonical import VECTOR_DIM, dimension_names
from schemas.card import EmbodimentKind
from schemas.episode import QualityTier

CATALOG_DIR = "catalog"
EPISODES_FILE = "catalog/episodes.parquet"
DATASETS_FILE = "catalog/datasets.parquet"
LATENTS_META_PATH = "meta/latents.json"
LATENTS_PATH = "latents/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.safetensors"

Category = EmbodimentKind
CATEGORIES: tuple[str, ...] = get_args(EmbodimentKind)
TIERS: tuple[str, ...] = get_args(QualityTier)
Task = Literal["policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting"]
TASKS: tuple[str, ...] = get_args(Task)
Stage = Literal["pretraining", "post_training"]
Weighting = Literal["hours", "uniform", "explicit"]

# CONTRACT.md section 8: what each tier may train.
TIER_TASKS: dict[str, tuple[str, ...]] = {
    "high": TASKS,
    "low": ("forward_dynamics", "inverse_dynamics", "visual_forecasting"),
    "actionless": ("visual_forecasting",),
}
# The one widening the contract allows: low-tier policy, "optional in post-training".
POST_TRAINING_EXTRA: dict[str, tuple[str, ...]] = {"low": ("policy",)}


def allowed_tasks(tier: str, stage: str = "pretraining") -> tuple[str, ...]:
    """The tasks `tier` may train at `stage`; actionless data is never widened."""
    extra = POST_TRAINING_EXTRA.get(tier, ()) if stage == "post_training" else ()
    return tuple(t for t in TASKS if t in TIER_TASKS[tier] or t in extra)


def dims_bitstring(names: list[str]) -> str:
    """The valid canonical dimensions as 146 characters, `1` = may be valid; unknown names raise."""
    all_names = dimension_names()
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"unknown canonical dimension names: {unknown[:5]}")
    valid = set(names)
    return "".join("1" if n in valid else "0" for n in all_names)


def dims_from_bitstring(bits: str) -> list[str]:
    return [n for n, b in zip(dimension_names(), bits, strict=True) if b == "1"]


# --------------------------------------------------------------------------- catalog rows

Bits = str  # 146 characters of 0/1, in `dimension_names()` order
BITS_PATTERN = rf"^[01]{{{VECTOR_DIM}}}$"


class CatalogEpisode(BaseModel):
    """One row of `ROOT/catalog/episodes.parquet`: one episode of one dataset."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(description="the dataset folder name under ROOT")
    episode_index: int = Field(ge=0)
    source_episode_id: str
    source: str = Field(description="the dataset card's source (e.g. egodex)")
    embodiment: str
    category: Category = Field(description="the dataset card's embodiment_kind")
    quality_tier: QualityTier
    tier_rule: str = Field("", description="what decided the tier (docs/TIERS.md)")
    tier_reason: str = ""
    has_action: bool
    length: int = Field(gt=0, description="frames at the dataset's fps")
    seconds: float = Field(ge=0, description="length / fps")
    caption: str
    caption_source: str
    task: str = Field(description="task_original: the source's own text")
    valid_state_dims: Bits = Field(pattern=BITS_PATTERN)
    valid_action_dims: Bits = Field(pattern=BITS_PATTERN)
    latents_present: bool = Field(description="meta/latents.json and every camera's latents file exist")
    path: str = Field(description="the episode's data Parquet, relative to ROOT")


class CatalogDataset(BaseModel):
    """One row of `ROOT/catalog/datasets.parquet`: one dataset folder and the fingerprint of its meta."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    path: str = Field(description="the dataset folder, relative to ROOT")
    source: str
    source_version: str
    license: str
    category: Category
    robot_type: str | None
    reference_frame: Literal["camera", "base"]
    fps: int = Field(gt=0)
    episodes: int = Field(ge=0)
    frames: int = Field(ge=0)
    hours: float = Field(ge=0, description="info.json total_frames / fps / 3600")
    rejects: int = Field(ge=0)
    cameras: list[str]
    valid_state_dims: Bits = Field(pattern=BITS_PATTERN)
    valid_action_dims: Bits = Field(pattern=BITS_PATTERN)
    latents: bool = Field(description="meta/latents.json exists")
    latent_episodes: int = Field(ge=0, description="episodes whose latents are all present")
    fingerprint: str = Field(description="sha256 of the sizes and mtimes of the meta files")


def episode_schema() -> dict[str, Any]:
    """The polars schema of `CatalogEpisode` (polars is imported when called, not at module load)."""
    return polars_schema(CatalogEpisode)


def dataset_schema() -> dict[str, Any]:
    """The polars schema of `CatalogDataset`."""
    return polars_schema(CatalogDataset)


def polars_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A row model's polars schema derived from its annotations, in field order: `str`, `int`, `float`,
    `bool` -> String, Int64, Float64, Boolean; `Literal` -> `pl.Enum` of its values in order; `list[X]` ->
    `pl.List`; `X | None` -> X (nullable)."""
    import polars as pl

    simple = {str: pl.String, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann, args = field.annotation, get_args(field.annotation)
        if get_origin(ann) is Literal:
            out[name] = pl.Enum(list(args))
        elif get_origin(ann) is list:
            out[name] = pl.List(simple[args[0]])
        elif type(None) in args:  # Optional[X]
            out[name] = simple[next(a for a in args if a is not type(None))]
        else:
            out[name] = simple[ann]
    return out


# --------------------------------------------------------------------------- the selection language

Op = Literal["==", "!=", "<", "<=", ">", ">="]
FUNCTIONS = ("contains", "startswith", "endswith", "matches", "state_valid", "action_valid")
MAX_WHERE_CHARS = 4000
MAX_WHERE_DEPTH = 40  # nesting of the parsed selection (`a == 1 and not b` is 5 deep)
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NAMED_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}


@dataclass(frozen=True)
class Cmp:
    """`column op value` (a literal, or another column when `other` is set)."""

    column: str
    op: str
    value: Any = None
    other: str | None = None


@dataclass(frozen=True)
class In:
    column: str
    values: tuple[Any, ...]
    negate: bool = False


@dataclass(frozen=True)
class Func:
    """`contains(col, "x")`, `startswith`, `endswith`, `matches(col, regex)`; `state_valid("name")`,
    `action_valid("name")` (column is then the bitstring column and `arg` the dimension indices)."""

    name: str
    column: str
    arg: Any


@dataclass(frozen=True)
class Not:
    item: Where


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    items: tuple[Where, ...]


@dataclass(frozen=True)
class Const:
    value: bool


Where = Cmp | In | Func | Not | BoolOp | Const


class WhereError(ValueError):
    """A selection that does not parse or names an unknown column / value."""


def episode_columns() -> dict[str, Any]:
    """Column name -> python type (`str`, `int`, `float`, `bool`, or a tuple of allowed values)."""
    out: dict[str, Any] = {}
    for name, field in CatalogEpisode.model_fields.items():
        ann = field.annotation
        out[name] = get_args(ann) if get_origin(ann) is Literal else ann
    return out


def parse_where(text: str) -> Where:
    """Parse a selection; raise `WhereError` with a readable message. Nothing is evaluated."""
    if len(text) > MAX_WHERE_CHARS:
        raise WhereError(f"selection longer than {MAX_WHERE_CHARS} characters")
    if not text.strip():
        return Const(True)
    body = text.strip()
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as e:  # `offset` counts from 1 in the stripped text: report it in the text typed
        column = (e.offset or 1) + len(text) - len(text.lstrip())
        raise WhereError(f"syntax error at column {column}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise WhereError(f"selection nested more than {MAX_WHERE_DEPTH} deep") from None
    if _depth(tree) > MAX_WHERE_DEPTH:
        raise WhereError(f"selection nested more than {MAX_WHERE_DEPTH} deep") from None
    return _Parser(episode_columns()).node(tree.body)


def _depth(tree: ast.AST) -> int:
    """How deep the tree nests, walked without recursion; stops counting past the bound."""
    deepest, stack = 0, [(tree, 1)]
    while stack and deepest <= MAX_WHERE_DEPTH:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


class _Parser:
    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = columns

    def node(self, n: ast.expr) -> Where:
        if isinstance(n, ast.BoolOp):
            op = "and" if isinstance(n.op, ast.And) else "or"
            return BoolOp(op, tuple(self.node(v) for v in n.values))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            return Not(self.node(n.operand))
        if isinstance(n, ast.Compare):
            return self.compare(n)
        if isinstance(n, ast.Call):
            return self.call(n)
        if isinstance(n, ast.Name) and n.id in self.columns and self.columns[n.id] is bool:
            return Cmp(n.id, "==", True)
        if isinstance(n, ast.Constant | ast.Name) and self.is_literal(n):
            value = self.literal(n)
            if isinstance(value, bool):
                return Const(value)
        raise WhereError(f"not allowed in a selection: {_show(n)}")

    def compare(self, n: ast.Compare) -> Where:
        parts, left = [], n.left
        for op, right in zip(n.ops, n.comparators, strict=True):
            parts.append(self.pair(left, op, right))
            left = right
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def pair(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Where:
        if isinstance(op, ast.In | ast.NotIn):
            column = self.column(left)
            if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                raise WhereError(f"`in` needs a list of values, got {_show(right)}")
            values = tuple(self.checked(column, self.literal(e)) for e in right.elts)
            return In(column, values, negate=isinstance(op, ast.NotIn))
        if type(op) not in _CMP:
            raise WhereError(f"operator not allowed: {type(op).__name__}")
        sym = _CMP[type(op)]
        if self.is_column(left) and self.is_column(right):
            return self.ordered(Cmp(self.column(left), sym, other=self.column(right)))
        if self.is_column(right):
            left, right, sym = right, left, _FLIP[sym]
        column = self.column(left)
        return self.ordered(Cmp(column, sym, self.checked(column, self.literal(right))))

    def ordered(self, cmp: Cmp) -> Cmp:
        kind = self.columns[cmp.column]
        if cmp.op not in ("==", "!=") and (isinstance(kind, tuple) or kind is bool):
            raise WhereError(f"{cmp.column} only supports ==, != and in")
        return cmp

    def call(self, n: ast.Call) -> Where:
        name = n.func.id if isinstance(n.func, ast.Name) else None
        if name not in FUNCTIONS or n.keywords:
            raise WhereError(f"unknown function {_show(n.func)}; known: {', '.join(FUNCTIONS)}")
        if name in ("state_valid", "action_valid"):
            if len(n.args) != 1:
                raise WhereError(f'{name} takes one dimension name, e.g. {name}("left.gripper")')
            dims = _dimension_indices(self.string(n.args[0], name))
            return Func(name, f"valid_{name.split('_')[0]}_dims", dims)
        if len(n.args) != 2:
            raise WhereError(f'{name} takes a column and a string, e.g. {name}(caption, "cup")')
        column = self.column(n.args[0])
        if self.columns[column] is not str:
            raise WhereError(f"{name} needs a text column, {column} is not one")
        pattern = self.string(n.args[1], name)
        if name == "matches":
            try:
                re.compile(pattern)
            except re.error as e:
                raise WhereError(f"bad regular expression {pattern!r}: {e}") from None
        return Func(name, column, pattern)

    def string(self, n: ast.expr, fn: str) -> str:
        value = self.literal(n)
        if not isinstance(value, str):
            raise WhereError(f"{fn} needs a string, got {_show(n)}")
        return value

    def is_column(self, n: ast.expr) -> bool:
        return isinstance(n, ast.Name) and n.id in self.columns

    def column(self, n: ast.expr) -> str:
        if not isinstance(n, ast.Name):
            raise WhereError(f"expected a column name, got {_show(n)}")
        if n.id not in self.columns:
            raise WhereError(f"unknown column {n.id!r}; columns: {', '.join(self.columns)}")
        return n.id

    @staticmethod
    def is_literal(n: ast.expr) -> bool:
        return isinstance(n, ast.Constant) or (isinstance(n, ast.Name) and n.id in _NAMED_CONSTANTS)

    def literal(self, n: ast.expr) -> Any:
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Constant):
            value = self.literal(n.operand)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return -value
        if isinstance(n, ast.Name) and n.id in _NAMED_CONSTANTS:
            return _NAMED_CONSTANTS[n.id]
        if isinstance(n, ast.Constant) and isinstance(n.value, str | int | float | bool):
            return n.value
        hint = f' (text is quoted: "{n.id}")' if isinstance(n, ast.Name) else ""
        raise WhereError(f"expected a value (string, number, true/false), got {_show(n)}{hint}")

    def checked(self, column: str, value: Any) -> Any:
        kind = self.columns[column]
        if isinstance(kind, tuple):
            if value not in kind:
                raise WhereError(f"{column} has no value {value!r}; values: {', '.join(kind)}")
            return value
        ok = {
            str: isinstance(value, str),
            bool: isinstance(value, bool),
            int: isinstance(value, int | float) and not isinstance(value, bool),
            float: isinstance(value, int | float) and not isinstance(value, bool),
        }[kind]
        if not ok:
            raise WhereError(f"{column} is {kind.__name__}, cannot compare it with {value!r}")
        return value


def _dimension_indices(name: str) -> tuple[int, ...]:
    """Indices of `name` itself or every dimension under it (`left.keypoint` -> all 63)."""
    names = dimension_names()
    idx = tuple(i for i, n in enumerate(names) if n == name or n.startswith(name + "."))
    if not idx:
        raise WhereError(f"unknown dimension {name!r}; e.g. left.gripper, right.position, left.keypoint")
    return idx


def _show(n: ast.AST) -> str:
    text = ast.unparse(n) if isinstance(n, ast.expr) else type(n).__name__
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- the mixture file


class MixtureEntry(BaseModel):
    """A named selection of catalog episodes, its weight (when `explicit`) and what each tier trains."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    where: str = Field(description="a selection over the catalog's episodes (docs/CATALOG.md)")
    weight: float | None = Field(None, gt=0, description="required with weighting: explicit, else absent")
    tasks: dict[QualityTier, list[Task]] = Field(
        default_factory=lambda: {tier: list(tasks) for tier, tasks in TIER_TASKS.items()},
        description="tier -> tasks; a tier left out is not used by this entry",
    )

    @field_validator("where")
    @classmethod
    def _parses(cls, v: str) -> str:
        parse_where(v)
        return v

    @field_validator("tasks")
    @classmethod
    def _no_duplicates(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for tier, tasks in v.items():
            if len(set(tasks)) != len(tasks):
                raise ValueError(f"{tier}: a task is listed twice")
        return v

    def trained_tiers(self) -> list[str]:
        return [t for t in TIERS if self.tasks.get(t)]


class MixtureError(ValueError):
    """A mixture that breaks a rule; the message names the entry and the field."""

    def __init__(self, entry: str, field: str, msg: str) -> None:
        super().__init__(f"entry {entry!r}, field {field!r}: {msg}")
        self.entry, self.field = entry, field


class Mixture(BaseModel):
    """The mixture file: entries over the catalog, a weighting rule and the training stage."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    stage: Stage = "pretraining"
    weighting: Weighting = "hours"
    temperature: float = Field(1.0, gt=0, description="weights ~ hours ** (1 / temperature)")
    entries: list[MixtureEntry] = Field(min_length=1)

    @field_validator("entries", mode="before")
    @classmethod
    def _entry_errors_name_the_entry(cls, v: Any) -> Any:
        """Validate each entry alone so that a failure names it (pydantic would only give its index)."""
        if not isinstance(v, list):
            return v
        out = []
        for i, raw in enumerate(v):
            name = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
            try:
                out.append(raw if isinstance(raw, MixtureEntry) else MixtureEntry.model_validate(raw))
            except ValueError as e:
                raise ValueError(_entry_message(name, e)) from None
        return out

    @model_validator(mode="after")
    def _rules(self) -> Mixture:
        names = [e.name for e in self.entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MixtureError(dup[0], "name", "two entries have this name")
        for entry in self.entries:
            self._check_weight(entry)
            self._check_tasks(entry)
        return self

    def _check_weight(self, entry: MixtureEntry) -> None:
        if self.weighting == "explicit" and entry.weight is None:
            raise MixtureError(entry.name, "weight", "weighting is explicit: every entry needs a weight")
        if self.weighting != "explicit" and entry.weight is not None:
            raise MixtureError(entry.name, "weight", f"weighting is {self.weighting}: remove the weight")

    def _check_tasks(self, entry: MixtureEntry) -> None:
        if not entry.trained_tiers():
            raise MixtureError(entry.name, "tasks", "the entry trains nothing")
        for tier, tasks in entry.tasks.items():
            wider = [t for t in tasks if t not in allowed_tasks(tier, self.stage)]
            if wider:
                raise MixtureError(
                    entry.name,
                    "tasks",
                    f"tier {tier} may not train {', '.join(wider)} at {self.stage} "
                    f"(allowed: {', '.join(allowed_tasks(tier, self.stage))}; CONTRACT.md section 8)",
                )


def _entry_message(name: str, e: ValueError) -> str:
    if hasattr(e, "errors"):
        parts = []
        for err in e.errors():  # type: ignore[attr-defined]
            field = ".".join(str(p) for p in err["loc"]) or "entry"
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"entry {name!r}, field {field!r}: {msg}")
        return "; ".join(parts)
    return f"entry {name!r}: {e}"


def mixture_error_text(e: ValueError) -> str:
    """One readable line per problem of a failed `Mixture` validation."""
    if not hasattr(e, "errors"):
        return str(e)
    lines = []
    for err in e.errors():  # type: ignore[attr-defined]
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(msg if msg.startswith("entry ") or not loc else f"field {loc!r}: {msg}")
    return "\n".join(lines)
