"""The mixture file (docs/CATALOG.md): named selections of catalog episodes, their weighting and what each
quality tier trains. `catalog mixture` writes it, `train launch` reads it (`catalog/mixture.py`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from catalog.where import parse_where
from schemas.catalog import TIER_TASKS, TIERS, Stage, Task, Weighting, allowed_tasks
from schemas.episode import QualityTier


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
