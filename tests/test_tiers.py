"""Quality tiers (docs/TIERS.md): episodes with a known defect land in the expected tier, for the
expected reason; the interaction filter cuts idle ends consistently; pipelines.yaml holds the rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ingest.convert import hands
from ingest.stages import interaction, quality, tiers
from schemas.canonical import INDEX_TIP, THUMB_TIP, Side, part_slice
from schemas.episode import CanonicalEpisode, EpisodeMeta, ExtraColumn, VideoSource
from schemas.pipelines import PipelinesFile, config_sha256
from schemas.sources_oxe import OxeConfig
from schemas.tiers import DEFAULT_TIERS, InteractionConfig, QualityConfig, TierRule

FPS = 10
REPO_PIPELINES = Path(__file__).resolve().parents[1] / "pipelines.yaml"


# ----------------------------------------------------------------------------------------- fixtures


def min_jerk(t: int, dist: float = 0.3) -> np.ndarray:
    """`[t, 3]` positions of a smooth minimum-jerk reach of `dist` metres along x."""
    tau = np.linspace(0.0, 1.0, t)
    return np.stack([dist * (10 * tau**3 - 15 * tau**4 + 6 * tau**5), np.zeros(t), np.full(t, 0.4)], -1)


def still(t: int, at: np.ndarray) -> np.ndarray:
    return np.repeat(at[None, :], t, axis=0)


def side_arrays(pos: np.ndarray, grip: np.ndarray, conf: np.ndarray | None) -> hands.SideArrays:
    """One side from wrist positions (identity rotation, static camera) and gripper openings in [0, 1]."""
    t = len(pos)
    wrist = np.repeat(np.eye(4)[None], t, axis=0)
    wrist[:, :3, 3] = pos
    kps = np.tile(np.linspace(0.0, 0.08, 21)[None, :, None] * np.ones(3), (t, 1, 1))
    kps[:, THUMB_TIP] = 0.0
    kps[:, INDEX_TIP] = np.stack([grip * 0.10, np.zeros(t), np.zeros(t)], -1)
    confidence = None if conf is None else np.repeat(conf[:, None], 21, axis=1)
    return hands.build_side(np.repeat(np.eye(4)[None], t, axis=0), wrist, kps, confidence, 0.2)


def episode(
    sides: dict[Side, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    labels: dict[str, float] | None = None,
) -> CanonicalEpisode:
    """A canonical episode (video, extra and annotation columns too) with a placeholder tier."""
    t = len(next(iter(sides.values()))[0])
    a = hands.assemble({s: side_arrays(*v) for s, v in sides.items()}, t)
    meta = EpisodeMeta(
        source_episode_id="fixture", embodiment="test", has_action=True, quality_tier="high",
        quality_metrics=dict(labels or {}), caption="pick", caption_source="source", task_original="pick",
    )  # fmt: skip
    return CanonicalEpisode(
        meta=meta, state=a.state, action=a.action, state_mask=a.state_mask, action_mask=a.action_mask,
        videos={"observation.images.ego": VideoSource(Path("x.mp4"), np.arange(t, dtype=np.int64) * 3)},
        extra={"action.native": ExtraColumn(np.arange(t, dtype=np.float32)[:, None], ["i"])},
        annotations={"annotation.step": [f"s{i}" for i in range(t)]},
    )  # fmt: skip


def robot(pos: np.ndarray, grip: np.ndarray | None = None, **labels: float) -> CanonicalEpisode:
    g = np.ones(len(pos)) if grip is None else grip
    return episode({"right": (pos, g, None)}, labels)


def human(left: np.ndarray, right: np.ndarray, conf_left: np.ndarray | None = None) -> CanonicalEpisode:
    pinch = 0.6 + 0.2 * np.sin(np.arange(len(left)) / 5)
    return episode({"left": (left, pinch, conf_left), "right": (right, pinch, None)})


def grasp(t: int, closes: list[tuple[int, int]]) -> np.ndarray:
    """Gripper openings: 1 (open), 0 during each [close, open) frame range."""
    g = np.ones(t)
    for a, b in closes:
        g[a:b] = 0.0
    return g


def cfg(kind: str = "real_robot", quality_cfg: QualityConfig | None = None) -> OxeConfig:
    extra = {} if quality_cfg is None else {"quality": quality_cfg}
    return OxeConfig(
        format="oxe", source_version="1", license="x", embodiment="widowx", embodiment_kind=kind,
        reference_frame="base", native_fps=5, **extra,
    )  # fmt: skip


REACH = min_jerk(60)  # 6 s smooth reach


# ------------------------------------------------------------------------------------ known defects


def test_clean_reach_is_high() -> None:
    ep = quality.stage(robot(REACH, grasp(60, [(30, 60)])), cfg())
    m = ep.meta
    assert (m.quality_tier, m.tier_rule) == ("high", "all_passed")
    assert m.tier_reason == "passed 7 rules; not measured, skipped: success"
    assert m.quality_metrics["regrasps"] == 0 and m.quality_metrics["cut_frames_start"] == 0
    assert m.quality_metrics["path_over_displacement"] == pytest.approx(1.0, abs=1e-6)


def test_pause_tiers_low_by_interaction() -> None:
    pos = np.concatenate(
        [min_jerk(30, 0.2), still(35, min_jerk(30, 0.2)[-1]), min_jerk(30, 0.2) + [0.2, 0, 0]]
    )
    ep = quality.stage(robot(pos), cfg())
    m = ep.meta
    assert (m.quality_tier, m.tier_rule) == ("low", "interaction")
    pause = m.quality_metrics["longest_pause_s"]
    assert 3.5 <= pause <= 4.5  # the 3.5 s stop plus the slow ends of the reaches around it
    assert m.tier_reason == f"interior pause {pause:.1f} s >= 3 s"
    assert m.quality_metrics["idle_ratio"] < 0.5  # so it is the pause rule, not idle_ratio, that decides
    assert ep.length == 95  # interior pauses are never cut


def test_retry_is_low_by_regrasps() -> None:
    ep = quality.stage(robot(REACH, grasp(60, [(20, 28), (36, 60)])), cfg())
    assert (ep.meta.quality_tier, ep.meta.tier_rule) == ("low", "regrasps <= 0")
    assert ep.meta.tier_reason == "regrasps = 1 fails regrasps <= 0 (the gripper closed again: a retry)"


def test_failed_grasp_is_low_by_the_source_success_flag() -> None:
    ep = quality.stage(robot(REACH, grasp(60, [(30, 60)]), success=0.0), cfg())
    assert (ep.meta.quality_tier, ep.meta.tier_rule) == ("low", "success >= 1")
    assert ep.meta.quality_metrics["success"] == 0.0  # the source's label is kept
    ok = quality.stage(robot(REACH, grasp(60, [(30, 60)]), success=1.0), cfg())
    assert ok.meta.quality_tier == "high" and "skipped" not in ok.meta.tier_reason


def test_jittery_hand_track_is_low_by_jerk() -> None:
    rng = np.random.default_rng(0)
    left, right = min_jerk(60, 0.2) - [0.3, 0, 0], min_jerk(60, 0.2)
    clean = quality.stage(human(left, right), cfg("human_action"))
    assert clean.meta.quality_tier == "high" and clean.meta.quality_metrics["jerk_rms"] < 1.0
    jitter = rng.normal(0, 0.005, (2, *right.shape))  # 5 mm tracking noise on both wrists
    ep = quality.stage(human(left + jitter[0], right + jitter[1]), cfg("human_action"))
    assert (ep.meta.quality_tier, ep.meta.tier_rule) == ("low", "jerk_rms <= 30")
    assert ep.meta.quality_metrics["jerk_rms"] > 30


def test_hand_out_of_view_is_low_by_visibility() -> None:
    conf = np.ones(60)
    conf[10:40] = 0.0  # the left hand is untracked half of the time: 3/4 of (frame, hand) pairs valid
    ep = quality.stage(human(min_jerk(60, 0.2) - [0.3, 0, 0], min_jerk(60, 0.2), conf), cfg("human_action"))
    assert (ep.meta.quality_tier, ep.meta.tier_rule) == ("low", "valid_fraction >= 0.8")
    assert ep.meta.quality_metrics["valid_fraction"] == pytest.approx(0.75)


def test_both_hands_count_for_humans_even_when_one_is_never_seen() -> None:
    conf = np.zeros(60)
    ep = quality.stage(human(min_jerk(60, 0.2) - [0.3, 0, 0], min_jerk(60, 0.2), conf), cfg("human_action"))
    assert ep.meta.quality_metrics["valid_fraction"] == pytest.approx(0.5)
    assert ep.meta.quality_tier == "low"


# ----------------------------------------------------------------------------- the interaction filter


IDLE_ENDS = np.concatenate([still(20, REACH[0]), REACH, still(15, REACH[-1])])  # 2 s, 6 s, 1.5 s


def test_cut_mode_trims_idle_ends_consistently() -> None:
    src = robot(IDLE_ENDS, grasp(95, [(50, 95)]))
    ep = quality.stage(src, cfg())
    m = ep.meta.quality_metrics
    start, end = int(m["cut_frames_start"]), int(m["cut_frames_end"])
    assert start >= 20 and end >= 15 and ep.length == 95 - start - end
    assert ep.meta.quality_tier == "high" and m["frames"] == ep.length and m["idle_start_s"] < 1.0
    np.testing.assert_array_equal(ep.state, src.state[start : 95 - end])
    np.testing.assert_array_equal(
        ep.videos["observation.images.ego"].frame_indices, np.arange(start, 95 - end) * 3
    )
    assert (
        ep.extra["action.native"].values[0, 0] == start
        and ep.annotations["annotation.step"][-1] == f"s{94 - end}"
    )
    pos, rot, grip = (part_slice("right", p) for p in ("position", "rotation", "gripper"))
    assert not ep.action[-1, pos].any() and ep.action[-1, rot].tolist() == [1, 0, 0, 0, 1, 0]
    assert ep.action[-1, grip] == ep.state[-1, grip] and ep.action_mask[-1, pos].all()
    assert not ep.action[:, :73].any()  # the side the source does not fill stays zeros
    np.testing.assert_array_equal(ep.action[:-1], src.action[start : 94 - end])
    ep.check()


def test_tier_mode_keeps_the_episode_and_tiers_it_low() -> None:
    rules = DEFAULT_TIERS.real_robot.model_copy(update={"interaction": InteractionConfig(mode="tier")})
    ep = quality.stage(robot(IDLE_ENDS), cfg(quality_cfg=rules))
    assert ep.length == 95 and ep.meta.quality_metrics["cut_frames_start"] == 0
    assert (ep.meta.quality_tier, ep.meta.tier_rule) == ("low", "interaction")
    assert ep.meta.tier_reason.startswith("leading idle span 2.") and ep.meta.tier_reason.endswith(">= 1 s")


def test_short_idle_ends_are_kept() -> None:
    pos = np.concatenate([still(3, REACH[0]), REACH])  # 0.3 s + the reach's 0.5 s slow start < 1 s
    ep = quality.stage(robot(pos), cfg())
    assert ep.length == 63 and ep.meta.quality_metrics["cut_frames_start"] == 0
    assert ep.meta.quality_metrics["idle_start_s"] == pytest.approx(0.8)
    assert ep.meta.quality_tier == "high"


def test_an_episode_without_interaction_is_tiered_not_dropped() -> None:
    ep = quality.stage(robot(still(40, REACH[0])), cfg())
    assert ep.length == 40 and ep.meta.quality_metrics["active_steps"] == 0
    assert ep.meta.quality_tier == "low"
    off = DEFAULT_TIERS.real_robot.model_copy(update={"rules": []})
    ep = quality.stage(robot(still(40, REACH[0])), cfg(quality_cfg=off))
    assert (ep.meta.tier_rule, ep.meta.tier_reason) == (
        "interaction",
        "no hand-object interaction: all 40 frames idle",
    )


def test_gripper_motion_alone_is_interaction() -> None:
    c = InteractionConfig()
    ep = robot(still(30, REACH[0]), grasp(30, [(10, 30)]))
    active = interaction.active_steps(ep.state, ep.state_mask, c)
    assert active.tolist() == [i == 9 for i in range(29)]  # the one step where the gripper closes


# ------------------------------------------------------------------------------------------ the engine


def test_rules_run_in_order_and_missing_metrics_follow_the_policy() -> None:
    rules = [TierRule(metric="a", op="<", value=1), TierRule(metric="b", op=">", value=0, why="why b")]
    c = QualityConfig(rules=rules, interaction=InteractionConfig(mode="off"))
    assert tiers.decide({"a": 5, "b": -1}, True, c).rule == "a < 1"
    assert tiers.decide({"a": 0, "b": -1}, True, c).reason == "b = -1 fails b > 0 (why b)"
    assert tiers.decide({"a": 0}, True, c).tier == "high"
    strict = c.model_copy(update={"missing": "fail"})
    assert tiers.decide({"a": 0}, True, strict).reason == "b is not measured, required by b > 0 (why b)"
    lenient_rule = TierRule(metric="b", op=">", value=0, missing="skip")
    assert tiers.decide({"a": 0}, True, strict.model_copy(update={"rules": [lenient_rule]})).tier == "high"
    assert tiers.decide({"a": 5}, False, c).tier == "actionless"


def test_an_actionless_episode_stays_actionless() -> None:
    ep = robot(REACH)
    ep.meta = ep.meta.model_copy(update={"has_action": False})
    out = quality.stage(ep, cfg())
    assert (out.meta.quality_tier, out.meta.tier_rule) == ("actionless", "no_action") and out.length == 60


# ----------------------------------------------------------------------------------- pipelines.yaml


def test_shipped_pipelines_spell_out_the_defaults_and_sections_get_their_category() -> None:
    pf = PipelinesFile.load(REPO_PIPELINES)
    assert pf.tiers == DEFAULT_TIERS
    for name, section in pf.sources.items():
        assert section.quality == DEFAULT_TIERS.for_kind(section.embodiment_kind), name


def test_a_section_may_not_set_thresholds(tmp_path: Path) -> None:
    raw = yaml.safe_load(REPO_PIPELINES.read_text())
    raw["sources"]["egodex"]["quality"] = {"min_valid_fraction": 0.8}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="sources.egodex.quality: tier thresholds live in the top-level"):
        PipelinesFile.load(path)


def test_the_tiers_block_reaches_the_section_and_its_hash(tmp_path: Path) -> None:
    raw = yaml.safe_load(REPO_PIPELINES.read_text())
    before = config_sha256(PipelinesFile.model_validate(raw).source("egodex"))
    raw["tiers"]["human_action"]["rules"][-1]["value"] = 12.5
    pf = PipelinesFile.model_validate(raw)
    assert pf.source("egodex").quality.rules[-1] == TierRule(
        metric="jerk_rms", op="<=", value=12.5, why="jittery hand track"
    )
    assert pf.source("oxe").quality == DEFAULT_TIERS.real_robot
    assert config_sha256(pf.source("egodex")) != before  # the card's hash covers the rules used


def test_idle_ends_left_in_a_published_episode_tier_it_low() -> None:
    metrics = {"idle_start_s": 0.0, "idle_end_s": 2.5, "longest_pause_s": 0.0, "active_steps": 20.0}
    cut = QualityConfig(interaction=InteractionConfig(mode="cut"))
    assert (
        tiers.decide(metrics, True, cut).reason == "trailing idle span 2.5 s >= 1 s (cut needs `ingest run`)"
    )
    off = QualityConfig(interaction=InteractionConfig(mode="off"))
    assert tiers.decide(metrics, True, off).tier == "high"
    no_pause_rule = QualityConfig(interaction=InteractionConfig(mode="tier", max_pause_s=None))
    assert (
        tiers.decide({**metrics, "idle_end_s": 0.0, "longest_pause_s": 60.0}, True, no_pause_rule).tier
        == "high"
    )
