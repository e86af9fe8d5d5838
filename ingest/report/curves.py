"""State and action curves of one episode as small inline SVGs (no image files, no plotting library, a few
kilobytes each): per side, position, rotation angle and gripper over time. Every value is drawn as a thin
grey line; the valid ones again in colour, so a masked span shows as grey only."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from ingest.convert.geometry import rotation_from_6d
from schemas.canonical import SIDES, part_slice

W, H, PAD = 300, 96, 4
MAX_POINTS = 300
XYZ = ("#d62728", "#2ca02c", "#1f77b4")


@dataclass
class Series:
    values: np.ndarray  # float [T]
    valid: np.ndarray  # bool [T]
    colour: str


def _path(x: np.ndarray, y: np.ndarray, keep: np.ndarray) -> str:
    """An SVG path through the points where `keep`, broken where it is not."""
    parts, pen = [], "M"
    for xi, yi, k in zip(x, y, keep, strict=True):
        if k:
            parts.append(f"{pen}{xi:.1f} {yi:.1f}")
            pen = "L"
        else:
            pen = "M"
    return "".join(parts)


def svg(title: str, series: list[Series], unit: str) -> str:
    """One panel: every series on a shared y range, the title and the range in the corner."""
    vals = np.concatenate([s.values for s in series]) if series else np.zeros(0)
    finite = vals[np.isfinite(vals)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-9
    body = []
    for s in series:
        step = max(1, len(s.values) // MAX_POINTS)
        v, ok = s.values[::step], s.valid[::step]
        x = PAD + np.arange(len(v)) * (W - 2 * PAD) / max(len(v) - 1, 1)
        y = H - PAD - (np.nan_to_num(v, nan=lo) - lo) * (H - 2 * PAD - 12) / (hi - lo)
        fin = np.isfinite(v)
        body.append(f'<path d="{_path(x, y, fin)}" stroke="#bbb" fill="none" stroke-width="1"/>')
        body.append(f'<path d="{_path(x, y, fin & ok)}" stroke="{s.colour}" fill="none" stroke-width="1.5"/>')
    label = f"{escape(title)} [{lo:.3g}, {hi:.3g}] {escape(unit)}"
    return (
        f'<svg class="curve" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
        f'<rect width="{W}" height="{H}" fill="#fafafa"/><text x="4" y="11" font-size="10">{label}</text>'
        + "".join(body)
        + "</svg>"
    )


def _angles(rot6d: np.ndarray, relative_to_first: bool) -> np.ndarray:
    """Rotation angles in degrees: of each R against the first (state) or of each R itself (action)."""
    with np.errstate(invalid="ignore"):
        R = rotation_from_6d(rot6d.astype(np.float64))
        if relative_to_first:
            R = np.swapaxes(R[:1], -1, -2) @ R
        cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def side_panels(vec: np.ndarray, mask: np.ndarray, side: str, action: bool) -> list[str]:
    """Position, rotation angle and gripper panels of one side of `observation.state` or `action`."""
    pos, rot, grip = (part_slice(side, p) for p in ("position", "rotation", "gripper"))
    kind = "action" if action else "state"
    scale, unit = (1000.0, "mm/step") if action else (1.0, "m")
    xyz = [Series(vec[:, pos.start + i] * scale, mask[:, pos.start + i], XYZ[i]) for i in range(3)]
    ang = Series(_angles(vec[:, rot], not action), mask[:, rot].all(axis=1), "#9467bd")
    grp = Series(vec[:, grip.start].astype(np.float64), mask[:, grip.start], "#8c564b")
    return [
        svg(f"{side} {kind} position x y z", xyz, unit),
        svg(f"{side} {kind} rotation angle", [ang], "deg/step" if action else "deg from frame 0"),
        svg(f"{side} {kind} gripper", [grp], "open"),
    ]


def episode_panels(cols: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """`{"left state": [svg, ...], ...}` for each side that has any valid value (state or action)."""
    out = {}
    for side in SIDES:
        for key, mkey, action in (("observation.state", "observation.state_mask", False),
                                  ("action", "action_mask", True)):  # fmt: skip
            mask = cols[mkey].astype(bool)
            if mask[:, part_slice(side, "position").start : part_slice(side, "gripper").stop].any():
                out[f"{side} {'action' if action else 'state'}"] = side_panels(cols[key], mask, side, action)
    return out
