"""`ingest label PATH`: decide the quality tier of every episode of a published dataset again.

The dataset card names its `pipelines.yaml` section (`source`), whose category rules
(ingest/stages/tiers.py) decide each episode from its stored `quality_metrics`. A published episode is
never re-encoded, so the interaction filter can only tier (`cut` mode acts as `tier` here: an idle span
`ingest run` would have cut makes the episode `low`). Rows of `--overrides` (`source_episode_id,tier,
reason`) win and are recorded (`tier_rule: override`); an override stays on later runs without
`--overrides` until `--reset-overrides`. Labelling twice with the same inputs changes nothing.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ingest import writer
from ingest.stages import tiers
from schemas.card import DatasetCard
from schemas.catalog import TIERS
from schemas.episode import EpisodeMeta
from schemas.lerobot import CARD_PATH, EPISODES_PATH, EpisodeRecord
from schemas.pipelines import PipelinesFile
from schemas.tiers import QualityConfig, TierOverride

OVERRIDE_COLUMNS = ["source_episode_id", "tier", "reason"]
CUT_KEYS = ("cut_frames_start", "cut_frames_end")


class LabelOptions(BaseModel):
    """What `ingest label` accepts."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    pipelines: Path
    overrides: Path | None = None
    reset_overrides: bool = False


class TierCounts(BaseModel):
    """Episodes per tier, per deciding rule of the `low` ones, and what the interaction filter cut."""

    model_config = ConfigDict(extra="forbid")
    tiers: dict[str, int]
    low_rules: dict[str, int]
    overrides: int
    cut_episodes: int
    cut_frames: int

    def line(self) -> str:
        tiers_ = ", ".join(f"{t} {n}" for t, n in self.tiers.items())
        rules = ", ".join(f"{r}: {n}" for r, n in self.low_rules.items())
        why = f" (low by {rules})" if rules else ""
        over = f"; {self.overrides} decided by overrides" if self.overrides else ""
        cut = f"idle spans cut from {self.cut_episodes} episodes ({self.cut_frames} frames)"
        return f"tiers: {tiers_}{why}{over}; {cut}"


class LabelSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_root: Path
    changed: int  # episode Parquet files rewritten
    counts: TierCounts


def read_overrides(path: Path) -> dict[str, TierOverride]:
    """The override CSV by source episode id; ValueError naming the line of a bad or repeated row."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != OVERRIDE_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(OVERRIDE_COLUMNS)}, got {reader.fieldnames}")
        rows: dict[str, TierOverride] = {}
        for raw in reader:
            line = reader.line_num  # the file's line (blank lines and quoted newlines counted), not the row
            try:
                row = TierOverride.model_validate(raw)
            except ValidationError as e:
                err = e.errors()[0]
                field = ".".join(map(str, err["loc"]))
                raise ValueError(f"{path} line {line}: {field}: {err['msg']}") from None
            if row.source_episode_id in rows:
                raise ValueError(f"{path} line {line}: {row.source_episode_id!r} is overridden twice")
            rows[row.source_episode_id] = row
    return rows


def relabel(meta: EpisodeMeta, cfg: QualityConfig, override: TierOverride | None, keep: bool) -> EpisodeMeta:
    """The episode's meta with the tier decided: an override, a kept earlier override, or the rules."""
    decision = tiers.overridden(override, meta.has_action) if override is not None else None
    if decision is None and keep:
        decision = tiers.kept_override(meta)
    if decision is None:
        decision = tiers.decide(meta.quality_metrics, meta.has_action, cfg)
    return decision.apply(meta)


def tier_counts(root: Path) -> TierCounts:
    """The tier table of a dataset's `meta/episodes.jsonl`."""
    lines = (root / EPISODES_PATH).read_text().splitlines()
    records = [EpisodeRecord.model_validate_json(x) for x in lines if x.strip()]
    by_tier = Counter(r.quality_tier for r in records)
    cut = [sum(r.quality_metrics.get(k, 0.0) for k in CUT_KEYS) for r in records]
    return TierCounts(
        tiers={t: by_tier.get(t, 0) for t in TIERS},
        low_rules=dict(sorted(Counter(r.tier_rule for r in records if r.quality_tier == "low").items())),
        overrides=sum(r.tier_rule == tiers.OVERRIDE for r in records),
        cut_episodes=sum(c > 0 for c in cut),
        cut_frames=int(sum(cut)),
    )


def _check_overrides(overrides: dict[str, TierOverride], root: Path, source: Path | None) -> None:
    """ValueError before anything is written: an id no episode has, or a tier its episode cannot take."""
    has_action = {ep.record.source_episode_id: ep.record.has_action for ep in writer.read_published(root)}
    unknown = sorted(set(overrides) - set(has_action))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"{source}: no episode of {root} has source_episode_id {names}")
    for key, row in overrides.items():
        tiers.overridden(row, has_action[key])


def label(opts: LabelOptions) -> LabelSummary:
    """`ingest label`: re-decide every episode's tier, rewrite what changed, rebuild `meta/`."""
    root = opts.path
    card = DatasetCard.model_validate_json((root / CARD_PATH).read_text())
    cfg = PipelinesFile.load(opts.pipelines).source(card.source)
    overrides = read_overrides(opts.overrides) if opts.overrides is not None else {}
    _check_overrides(overrides, root, opts.overrides)

    def update(ep: writer.PublishedEpisode) -> EpisodeMeta:
        meta = EpisodeMeta.model_validate(ep.record.model_dump(include=set(EpisodeMeta.model_fields)))
        return relabel(meta, cfg.quality, overrides.get(meta.source_episode_id), not opts.reset_overrides)

    from ingest.workdir import dataset_lock, load_rejects

    with dataset_lock(root):
        changed = writer.rewrite_episode_meta(root, update)
        writer.finalize_meta(root, card.source, cfg, load_rejects(root))
    return LabelSummary(dataset_root=root, changed=changed, counts=tier_counts(root))
