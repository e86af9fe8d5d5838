"""The catalog's selection language (docs/CATALOG.md): `category == "human_action" and seconds > 2`.

`parse_where` parses the text with `ast.parse` and a whitelist of node types over the columns of
`CatalogEpisode`, checking every value against its column: user text is never evaluated. It returns a
small tree (`Where`) that `compile_where` turns into a polars expression. Why this and not
`polars.sql_expr`: docs/CATALOG.md, "Why not SQL".
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from schemas.canonical import dimension_names
from schemas.catalog import CatalogEpisode

if TYPE_CHECKING:
    import polars as pl

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


# --------------------------------------------------------------------------- compiling a selection

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_where(node: Where) -> pl.Expr:
    """The polars expression of a parsed selection."""
    import polars as pl

    if isinstance(node, Const):
        return pl.lit(node.value)
    if isinstance(node, Cmp):
        right = pl.col(node.other) if node.other else pl.lit(node.value)
        return _OPS[node.op](pl.col(node.column), right)
    if isinstance(node, In):
        expr = pl.col(node.column).is_in(list(node.values))
        return ~expr if node.negate else expr
    if isinstance(node, Func):
        return _function(node)
    if isinstance(node, Not):
        return ~compile_where(node.item)
    if isinstance(node, BoolOp):
        combine = operator.and_ if node.op == "and" else operator.or_
        return functools.reduce(combine, (compile_where(i) for i in node.items))
    raise TypeError(f"unknown selection node {node!r}")


def _function(node: Func) -> pl.Expr:
    import polars as pl

    col = pl.col(node.column)
    if node.name == "contains":
        return col.str.contains(node.arg, literal=True)
    if node.name == "startswith":
        return col.str.starts_with(node.arg)
    if node.name == "endswith":
        return col.str.ends_with(node.arg)
    if node.name == "matches":
        return col.str.contains(node.arg)
    # state_valid / action_valid: every listed index of the bitstring is "1", checked run by run
    runs = _runs(node.arg)
    return functools.reduce(operator.and_, (col.str.slice(a, n) == "1" * n for a, n in runs))


def _runs(indices: tuple[int, ...]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted indices as (start, length)."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return [(a, n) for a, n in runs]
