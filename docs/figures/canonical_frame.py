"""Draw docs/figures/canonical_frame.png: the canonical end-effector frame of a right hand, a left hand and
a parallel gripper, each in a top grasp (docs/CONTRACT.md). The hands' axes come from `eef.hand_frame`
applied to the drawn keypoints, so the figure shows what the code computes.

    .venv/bin/python docs/figures/canonical_frame.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ingest.convert import eef

COLOURS = {"x": "tab:red", "y": "tab:green", "z": "tab:blue"}
LABELS = {"x": "+x closing", "y": "+y = z × x", "z": "+z approach"}
BONES = [(0, 1), (1, 2), (2, 3), (3, 4)] + [
    (a, b) for f in range(4) for a, b in ((0, 5 + 4 * f), (5 + 4 * f, 6 + 4 * f), (6 + 4 * f, 7 + 4 * f),
                                          (7 + 4 * f, 8 + 4 * f))
]  # fmt: skip


def right_hand_palm_down() -> np.ndarray:
    """21 keypoints (metres, world z up) of a right hand palm down, fingers along +y, thumb at -x."""
    p = np.zeros((21, 3))
    p[1:5] = [[-0.03, 0.03, -0.01], [-0.05, 0.05, -0.02], [-0.06, 0.07, -0.03], [-0.065, 0.09, -0.04]]
    for f, x in enumerate((-0.025, 0.0, 0.02, 0.04)):
        for j in range(4):
            p[5 + 4 * f + j] = [x, 0.09 - 0.005 * abs(f - 1) + 0.022 * j, -0.012 * j * j]
    return p


def draw_axes(ax, origin: np.ndarray, R: np.ndarray, length: float = 0.06) -> None:
    for i, name in enumerate("xyz"):
        ax.quiver(*origin, *(R[:, i] * length), color=COLOURS[name], linewidth=2.5, arrow_length_ratio=0.2)
        ax.text(*(origin + R[:, i] * length * 1.15), LABELS[name], color=COLOURS[name], fontsize=8)


def draw_hand(ax, p: np.ndarray, side: str, title: str) -> None:
    for a, b in BONES:
        ax.plot(*np.stack([p[a], p[b]]).T, color="0.4", linewidth=1.5)
    ax.scatter(*p.T, s=10, color="goldenrod")
    draw_axes(ax, p[0], eef.hand_frame(p, side))
    ax.set_title(title, fontsize=10)


def draw_gripper(ax) -> None:
    """A parallel gripper pointing down: flange at z = 0.15, fingertips at 0, fingers moving along y."""
    for s in (-1, 1):
        ax.plot([0, 0], [0.03 * s, 0.03 * s], [0.0, 0.06], color="0.3", linewidth=4)
    ax.plot([0, 0], [-0.04, 0.04], [0.06, 0.06], color="0.3", linewidth=6)
    ax.plot([0, 0], [0, 0], [0.06, 0.15], color="0.3", linewidth=6)
    R = np.column_stack([[0, 1, 0], [1, 0, 0], [0, 0, -1]]).astype(float)  # x: finger axis, z: down
    draw_axes(ax, np.array([0.0, 0.0, 0.01]), R)
    ax.set_title("parallel gripper: origin between the fingertip pads", fontsize=10)


def main() -> None:
    fig = plt.figure(figsize=(15, 5))
    right = right_hand_palm_down()
    panels = [
        (lambda ax: draw_hand(ax, right, "right", "right hand, palm down: origin at the wrist (keypoint 0)")),
        (lambda ax: draw_hand(ax, right * [-1, 1, 1], "left", "left hand (mirror image): same x and z")),
        draw_gripper,
    ]
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        panel(ax)
        ax.set_xlim(-0.1, 0.1), ax.set_ylim(-0.05, 0.15), ax.set_zlim(-0.1, 0.15)
        ax.set_box_aspect((1, 1, 1.25))
        ax.view_init(elev=22, azim=-60)
        ax.set_xlabel("world x"), ax.set_ylabel("world y"), ax.set_zlabel("world z (up)")
    fig.suptitle(
        "The canonical end-effector frame: a top grasp approaches along +z (down) and closes along +x"
    )
    fig.tight_layout()
    out = Path(__file__).with_name("canonical_frame.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
