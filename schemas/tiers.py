"""Quality-tier rules (issue 8; docs/TIERS.md): the top-level `tiers:` block of `pipelines.yaml`.

One `QualityConfig` per category (`real_robot`, `sim_robot`, `human_action`, `human_actionless`):
an ordered list of `TierRule`s (metric, comparison, threshold) and the interaction filter. An
episode with actions is `low` by the first rule it fails, `high` when it fails none; an episode
without actions is `actionless`. Every section of `pipelines.yaml` gets its category's rules
(`SourceConfig.quality`); a section never sets thresholds of its own.

`TierOverride` is one row of the override CSV of `ingest label --overrides` (`source_episode_id,tier,
reason`); an override wins over the rules and is recorded as such.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.card import EmbodimentKind
from schemas.episode import QualityTier

Comparison = Literal[">=", ">", "<=", "<", "==", "!="]
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le,
    "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
MissingPolicy = Literal["skip", "fail"]
InteractionMode = Literal["off", "cut", "tier"]


class TierRule(BaseModel):
    """`metric op value` must hold for `high`; a failing rule makes the episode `low`."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(min_length=1, description="a key of quality_metrics")
    op: Comparison
    value: float
    missing: MissingPolicy | None = Field(None, description="when the metric is absent; default: category's")
    why: str = Field("", description="what a failure means, shown in the tier reason")

    @property
    def name(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def holds(self, measured: float) -> bool:
        return COMPARE[self.op](measured, self.value)


class InteractionConfig(BaseModel):
    """Spans without hand-object interaction: no side moves its wrist or gripper, or no side is visible.

    A 10 Hz step t -> t+1 is active when some side is valid at both frames and its wrist moves at least
    `idle_speed` or its gripper changes at least `idle_gripper_rate`. Leading/trailing idle spans of at
    least `min_span_s` are cut (`cut`, `ingest run` only) or tier the episode `low` (`tier`, and `cut`
    in `ingest label`, which cannot re-encode); an interior pause of at least `max_pause_s` tiers it
    `low` in both modes (it is never cut: that would join two moments of time)."""

    model_config = ConfigDict(extra="forbid")
    mode: InteractionMode = "cut"
    idle_speed: float = Field(0.01, gt=0, description="m/s of the wrist below which a step is idle")
    idle_gripper_rate: float = Field(0.05, gt=0, description="gripper units (0..1) per second")
    min_span_s: float = Field(1.0, gt=0, description="shorter leading/trailing idle spans are kept")
    max_pause_s: float | None = Field(3.0, gt=0, description="interior idle span that tiers low; null: off")


class QualityConfig(BaseModel):
    """One category's tier rules, evaluated in order, and its interaction filter."""

    model_config = ConfigDict(extra="forbid")
    missing: MissingPolicy = "skip"
    rules: list[TierRule] = []
    interaction: InteractionConfig = InteractionConfig()


def _rule(
    metric: str, op: Comparison, value: float, why: str, missing: MissingPolicy | None = None
) -> TierRule:
    return TierRule(metric=metric, op=op, value=value, why=why, missing=missing)


def _robot_rules(max_jerk: float) -> list[TierRule]:
    return [
        _rule("success", ">=", 1, "the source marks the attempt failed", "skip"),
        _rule("valid_fraction", ">=", 0.8, "the arm pose is missing too often"),
        _rule("wrist_speed_p99", "<=", 3.0, "implausibly fast end-effector steps"),
        _rule("idle_ratio", "<=", 0.5, "the arm stands still most of the time"),
        _rule("regrasps", "<=", 0, "the gripper closed again: a retry"),
        _rule("jerk_rms", "<=", max_jerk, "jerky motion"),
    ]


def _human_rules() -> list[TierRule]:
    return [
        _rule("success", ">=", 1, "the source marks the attempt failed", "skip"),
        _rule("valid_fraction", ">=", 0.8, "the hands are out of view or untracked too often"),
        _rule("keypoint_valid_fraction", ">=", 0.5, "low tracking confidence of the fingers"),
        _rule("wrist_speed_p99", "<=", 3.0, "implausibly fast wrist steps: tracking jumps"),
        _rule("idle_ratio", "<=", 0.5, "the hands are still most of the time"),
        _rule("jerk_rms", "<=", 30.0, "jittery hand track"),
    ]


class TiersConfig(BaseModel):
    """The `tiers:` block: one `QualityConfig` per category. These defaults are what pipelines.yaml
    spells out (docs/TIERS.md says where each threshold comes from)."""

    model_config = ConfigDict(extra="forbid")
    real_robot: QualityConfig = QualityConfig(
        rules=[*_robot_rules(15.0), _rule("path_over_displacement", "<=", 20.0, "a wandering path")]
    )
    sim_robot: QualityConfig = QualityConfig(rules=_robot_rules(15.0))
    human_action: QualityConfig = QualityConfig(rules=_human_rules())
    human_actionless: QualityConfig = QualityConfig(interaction=InteractionConfig(mode="off"))

    def for_kind(self, kind: EmbodimentKind) -> QualityConfig:
        return getattr(self, kind)


DEFAULT_TIERS = TiersConfig()


class TierOverride(BaseModel):
    """One row of an override CSV: the tier a person decided for one episode, and why."""

    model_config = ConfigDict(extra="forbid")
    source_episode_id: str = Field(min_length=1)
    tier: QualityTier
    reason: str = Field(min_length=1)

    @field_validator("source_episode_id", "reason")
    @classmethod
    def _strip(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()
