"""Batched SE(3) / SO(3) helpers in numpy (float64 in, float64 out; leading axes are batch axes).

Conventions: poses are 4x4 `world_from_frame` matrices; 6D rotations are the first two columns of R,
`[R[:,0], R[:,1]]` (CONTRACT.md section 4); quaternions are `(w, x, y, z)` with `w >= 0`.
"""

from __future__ import annotations

import numpy as np

IDENTITY_6D = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 poses `[..., 4, 4]`: `[R^T, -R^T t]` (assumes R orthonormal)."""
    T = np.asarray(T, dtype=np.float64)
    rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros(T.shape, dtype=np.float64)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply poses `[..., 4, 4]` to points `[..., P, 3]` (one pose per leading index)."""
    T = np.asarray(T, dtype=np.float64)
    rotated = np.einsum("...ij,...pj->...pi", T[..., :3, :3], np.asarray(points, dtype=np.float64))
    return rotated + T[..., None, :3, 3]


def rotation_to_6d(R: np.ndarray) -> np.ndarray:
    """`[..., 3, 3]` -> `[..., 6]`: first column then second column."""
    R = np.asarray(R, dtype=np.float64)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def rotation_from_6d(x: np.ndarray) -> np.ndarray:
    """`[..., 6]` -> `[..., 3, 3]` by Gram-Schmidt on the two columns; the third is their cross product.
    Degenerate input (a zero column, parallel columns) gives NaN, which callers check."""
    x = np.asarray(x, dtype=np.float64)
    a1, a2 = x[..., :3], x[..., 3:6]
    with np.errstate(invalid="ignore", divide="ignore"):
        b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
        b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
        b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """`[..., 3, 3]` -> unit quaternions `[..., 4]` (w, x, y, z), w >= 0 (Shepperd's method)."""
    m = np.asarray(R, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    sq = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    big = np.sqrt(np.maximum(sq, 1e-12))  # 2 * |component|, safe where not chosen
    cands = np.stack(
        [
            np.stack([big[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1) / (2 * big[..., 0:1]),
            np.stack([m21 - m12, big[..., 1] ** 2, m01 + m10, m02 + m20], -1) / (2 * big[..., 1:2]),
            np.stack([m02 - m20, m01 + m10, big[..., 2] ** 2, m12 + m21], -1) / (2 * big[..., 2:3]),
            np.stack([m10 - m01, m02 + m20, m12 + m21, big[..., 3] ** 2], -1) / (2 * big[..., 3:4]),
        ],
        axis=-2,
    )
    best = np.argmax(sq, axis=-1)[..., None, None]
    q = np.take_along_axis(cands, best, axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions `[..., 4]` (w, x, y, z; normalised here) -> `[..., 3, 3]`."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation of quaternions `[..., 4]`, weight `w` in [0, 1] (0 -> q0), shortest arc."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    near = sin < 1e-6
    safe = np.where(near, 1.0, sin)
    a = np.where(near, 1 - w, np.sin((1 - w) * theta) / safe)
    b = np.where(near, w, np.sin(w * theta) / safe)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def slerp_rotation(R0: np.ndarray, R1: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """SLERP between rotation matrices `[..., 3, 3]`; returns R0 / R1 exactly where w is 0 / 1."""
    R0, R1 = np.asarray(R0, dtype=np.float64), np.asarray(R1, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    out = quaternion_to_matrix(slerp(matrix_to_quaternion(R0), matrix_to_quaternion(R1), w))
    out = np.where((w == 0)[..., None, None], R0, out)
    return np.where((w == 1)[..., None, None], R1, out)


def orthonormality_error(R: np.ndarray) -> np.ndarray:
    """Per-matrix error `max(|R^T R - I|_max, |det R - 1|)` for `[..., 3, 3]` (NaN stays NaN)."""
    R = np.asarray(R, dtype=np.float64)
    gram = np.einsum("...ji,...jk->...ik", R, R) - np.eye(3)
    with np.errstate(invalid="ignore"):
        det = np.linalg.det(R)
    return np.maximum(np.abs(gram).max(axis=(-2, -1)), np.abs(det - 1.0))


def worst_frame(R: np.ndarray) -> tuple[int, float]:
    """(index, error) of the least orthonormal matrix in `[N, 3, 3]`; a NaN matrix counts as worst."""
    err = orthonormality_error(R)
    err = np.where(np.isnan(err), np.inf, err)
    i = int(np.argmax(err))
    return i, float(err[i])


# ------------------------------------------------------------------------- source rotation conventions

ROTATION_WIDTHS = {"quat_xyzw": 4, "quat_wxyz": 4, "euler": 3, "rot6d": 6}
_AXES = {"x": 0, "y": 1, "z": 2}
_MIN_QUAT_NORM = 1e-6
ORTHONORMAL_TOL = 1e-3  # max |R^T R - I| or |det R - 1| of a source rotation


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Elementary rotations `[..., 3, 3]` by `angle [...]` radians about the base axis 'x' | 'y' | 'z'."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    i = _AXES[axis.lower()]
    j, k = (i + 1) % 3, (i + 2) % 3
    R = np.zeros(angle.shape + (3, 3))
    R[..., i, i] = 1.0
    R[..., j, j], R[..., j, k] = c, -s
    R[..., k, j], R[..., k, k] = s, c
    return R


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Euler angles `[N, 3]` (radians, `angles[:, i]` about axis `order[i]`) -> rotations `[N, 3, 3]`.

    Lower-case `order` is extrinsic (about the fixed axes, the first applied first):
    `R = R_o2(a2) @ R_o1(a1) @ R_o0(a0)`, so "xyz" roll-pitch-yaw is `Rz(yaw) @ Ry(pitch) @ Rx(roll)`.
    Upper-case is intrinsic (about the moving axes): `R = R_o0(a0) @ R_o1(a1) @ R_o2(a2)`. Same meaning as
    scipy's `Rotation.from_euler(order, angles)`.
    """
    if len(order) != 3 or set(order.lower()) - set(_AXES) or not (order.islower() or order.isupper()):
        raise ValueError(f"euler order {order!r}: three of x/y/z, all lower case or all upper case")
    angles = np.asarray(angles, dtype=np.float64)
    mats = [axis_rotation(ax, angles[:, i]) for i, ax in enumerate(order)]
    if order.islower():
        return mats[2] @ mats[1] @ mats[0]
    return mats[0] @ mats[1] @ mats[2]


def quaternions_to_matrix(q: np.ndarray, order: str, unit: str = "row") -> np.ndarray:
    """Quaternions `[N, 4]` stored as `order` ('xyzw' | 'wxyz') -> `[N, 3, 3]`.
    A (near-)zero quaternion is a ValueError naming the first one ("zero quaternion at <unit> <i>")."""
    q = np.asarray(q, dtype=np.float64)
    q = q if order == "wxyz" else q[:, [3, 0, 1, 2]]
    small = np.linalg.norm(q, axis=1) < _MIN_QUAT_NORM
    if small.any():
        raise ValueError(f"zero quaternion at {unit} {int(np.argmax(small))}")
    return quaternion_to_matrix(q)


def values_to_rotation(
    values: np.ndarray, convention: str, euler_order: str = "xyz", unit: str = "row"
) -> np.ndarray:
    """Source rotation values `[N, D]` in `convention` (a key of ROTATION_WIDTHS) -> `[N, 3, 3]`.
    A wrong width, a zero quaternion or a result off SO(3) by more than ORTHONORMAL_TOL is a ValueError
    naming the first bad `<unit> <i>`; the source adds its file and field."""
    values, want = np.asarray(values, dtype=np.float64), ROTATION_WIDTHS[convention]
    if values.ndim != 2 or values.shape[1] != want:
        raise ValueError(f"{convention} needs {want} values, got {values.shape[-1]}")
    if convention == "euler":
        R = euler_to_matrix(values, euler_order)
    elif convention == "rot6d":
        R = rotation_from_6d(values)
    else:
        R = quaternions_to_matrix(values, convention.removeprefix("quat_"), unit)
    bad = ~(orthonormality_error(R) <= ORTHONORMAL_TOL)  # NaN (a degenerate 6D) is bad too
    if bad.any():
        raise ValueError(f"rotation not orthonormal at {unit} {int(np.argmax(bad))}")
    return R
