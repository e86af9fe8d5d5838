"""The tier-rule engine (docs/TIERS.md), shared by the `ingest run` stage and `ingest label`.

`decide(metrics, has_action, cfg)`: without actions `actionless`; else the category's rules in order
(`schemas/tiers.py`), the first failing one making the episode `low` with that rule as reason; then
the interaction check (idle spans left in the episode); `high` when nothing fails. A rule whose metric
is absent is skipped or fails, as the rule (or else the category) says. An override wins over all.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.episode import EpisodeMeta, QualityTier
from schemas.tiers import InteractionConfig, QualityConfig, TierOverride, TierRule

NO_ACTION, INTERACTION, OVERRIDE, ALL_PASSED = "no_action", "interaction", "override", "all_passed"


class TierDecision(BaseModel):
    """A tier, the rule that decided it and a sentence naming the measured values."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tier: QualityTier
    rule: str
    reason: str

    def apply(self, meta: EpisodeMeta) -> EpisodeMeta:
        return meta.model_copy(
            update={"quality_tier": self.tier, "tier_rule": self.rule, "tier_reason": self.reason}
        )


def _check(rule: TierRule, metrics: dict[str, float], cfg: QualityConfig) -> str | None:
    """None when the rule holds or is skipped; else why it failed."""
    why = f" ({rule.why})" if rule.why else ""
    if rule.metric not in metrics:
        missing = rule.missing or cfg.missing
        return None if missing == "skip" else f"{rule.metric} is not measured, required by {rule.name}{why}"
    value = metrics[rule.metric]
    return None if rule.holds(value) else f"{rule.metric} = {value:.4g} fails {rule.name}{why}"


def _interaction(metrics: dict[str, float], cfg: InteractionConfig) -> str | None:
    """Why the idle spans left in the episode make it `low`, or None (see `InteractionConfig`)."""
    if cfg.mode == "off" or "idle_start_s" not in metrics:
        return None
    if metrics.get("active_steps", 1.0) == 0:
        return f"no hand-object interaction: all {metrics.get('frames', 0):.0f} frames idle"
    for key, where in (("idle_start_s", "leading"), ("idle_end_s", "trailing")):
        if metrics[key] >= cfg.min_span_s:
            cut = " (cut needs `ingest run`)" if cfg.mode == "cut" else ""
            return f"{where} idle span {metrics[key]:.1f} s >= {cfg.min_span_s:g} s{cut}"
    pause = metrics.get("longest_pause_s", 0.0)
    if cfg.max_pause_s is not None and pause >= cfg.max_pause_s:
        return f"interior pause {pause:.1f} s >= {cfg.max_pause_s:g} s"
    return None


def decide(metrics: dict[str, float], has_action: bool, cfg: QualityConfig) -> TierDecision:
    """The tier of one episode from its metrics and its category's rules."""
    if not has_action:
        return TierDecision(tier="actionless", rule=NO_ACTION, reason="no action: only visual forecasting")
    for rule in cfg.rules:
        failed = _check(rule, metrics, cfg)
        if failed is not None:
            return TierDecision(tier="low", rule=rule.name, reason=failed)
    idle = _interaction(metrics, cfg.interaction)
    if idle is not None:
        return TierDecision(tier="low", rule=INTERACTION, reason=idle)
    skipped = [r.metric for r in cfg.rules if r.metric not in metrics]
    note = f"; not measured, skipped: {', '.join(skipped)}" if skipped else ""
    return TierDecision(tier="high", rule=ALL_PASSED, reason=f"passed {len(cfg.rules)} rules{note}")


def overridden(row: TierOverride, has_action: bool) -> TierDecision:
    """The decision of an override row; ValueError when it contradicts `has_action` (CONTRACT.md 8)."""
    if (row.tier == "actionless") == has_action:
        want = "high or low" if has_action else "actionless"
        raise ValueError(
            f"override {row.source_episode_id!r}: tier {row.tier!r}, but the episode can only be {want}"
        )
    return TierDecision(tier=row.tier, rule=OVERRIDE, reason=f"override: {row.reason}")


def kept_override(meta: EpisodeMeta) -> TierDecision | None:
    """The override an earlier `ingest label --overrides` recorded in `meta`, or None."""
    if meta.tier_rule != OVERRIDE:
        return None
    return TierDecision(tier=meta.quality_tier, rule=OVERRIDE, reason=meta.tier_reason)
