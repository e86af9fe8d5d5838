"""MANO parameters -> 21 hand keypoints in MANO-21 (OpenPose) order, through `smplx`.

The MANO model files (`MANO_RIGHT.pkl`, `MANO_LEFT.pkl`) are licence-gated (mano.is.tue.mpg.de): they come
from a local folder the user names and are never shipped. They are read without `chumpy` or `scipy`: the
unpickler maps chumpy arrays (`Ch`, whose state holds the array as `x`) and scipy sparse matrices (CSC/CSR
state: `data`, `indices`, `indptr`, `_shape`) to plain numpy arrays, then smplx builds its MANO layer from
them (`data_struct`), so smplx's own blend shapes and skinning compute the joints.

smplx returns the 16 native joints (wrist, index, middle, pinky, ring, thumb; kinematic-tree order) and
the 778 vertices; the 5 fingertips are the vertices smplx names for MANO (`smplx.vertex_ids`, thumb, index,
middle, ring, pinky), and `OPENPOSE_FROM_NATIVE` reorders `native16 ++ tips` into MANO-21
(source-formats.md 9.1 and 9.2).
"""

from __future__ import annotations

import contextlib
import io
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ingest.convert.geometry import matrix_to_quaternion
from schemas.canonical import SIDES, Side

MANO_FILES: dict[Side, str] = {"left": "MANO_LEFT.pkl", "right": "MANO_RIGHT.pkl"}
MANO_URL = "https://mano.is.tue.mpg.de"
N_BETAS = 10
TIP_NAMES = ("thumb", "index", "middle", "ring", "pinky")
OPENPOSE_FROM_NATIVE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
MODEL_SHAPES: dict[str, tuple[int, ...]] = {
    "v_template": (778, 3),
    "shapedirs": (778, 3, 10),
    "posedirs": (778, 3, 135),
    "J_regressor": (16, 778),
    "kintree_table": (2, 16),
    "weights": (778, 16),
    "f": (1538, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}
BATCH = 512  # frames per smplx call (the skinning transforms are [B, 778, 4, 4])


class ManoModelMissing(FileNotFoundError):
    """The MANO model folder is not configured or lacks the two pickles: the run refuses to start."""


def mano_files(mano_dir: Path | None) -> dict[Side, Path]:
    """The two model files of `mano_dir`; raises ManoModelMissing with what to do when they are absent."""
    where = "no folder configured" if mano_dir is None else str(mano_dir)
    files = {s: Path(mano_dir) / name for s, name in MANO_FILES.items()} if mano_dir is not None else {}
    missing = [MANO_FILES[s] for s in SIDES if s not in files or not files[s].is_file()]
    if missing:
        raise ManoModelMissing(
            f"MANO model files not found in {where} (missing {', '.join(missing)}): download "
            f"MANO_RIGHT.pkl / MANO_LEFT.pkl from {MANO_URL} (registration, non-commercial licence; they "
            "cannot be shipped) and name their folder with `--mano-dir`, the EI_FORGE_MANO_DIR environment "
            "variable or `mano_dir` in the pipelines.yaml section"
        )
    return files


# ------------------------------------------------------------------------------------------- loading


class _PickledState:
    """Stand-in for a chumpy / scipy.sparse object: keeps the pickled state to turn into an array."""

    def __setstate__(self, state: Any) -> None:
        self.state = state[-1] if isinstance(state, tuple) else state


class _Chumpy(_PickledState):
    def array(self) -> np.ndarray:
        if not isinstance(self.state, dict) or "x" not in self.state:
            raise ValueError("a chumpy object without an array `x` (a derived expression) is not supported")
        return np.asarray(_to_array(self.state["x"]), dtype=np.float64)


class _Sparse(_PickledState):
    fmt = "csc"

    def array(self) -> np.ndarray:
        s = self.state
        shape = tuple(s.get("_shape") or s.get("shape"))
        data, idx, ptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
        out = np.zeros(shape, dtype=np.float64)
        for major in range(len(ptr) - 1):
            sl = slice(ptr[major], ptr[major + 1])
            if self.fmt == "csc":
                out[idx[sl], major] = data[sl]
            else:
                out[major, idx[sl]] = data[sl]
        return out


class _Csr(_Sparse):
    fmt = "csr"


class _ManoUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            return _Chumpy
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return _Sparse if name == "csc_matrix" else _Csr
        return super().find_class(module, name)


def _to_array(value: Any) -> Any:
    return value.array() if isinstance(value, _PickledState) else value


def load_mano_arrays(path: Path) -> dict[str, np.ndarray]:
    """The smplx keys of a MANO pickle as float64 numpy arrays (`f`, `kintree_table` as int64).

    Raises ValueError naming the key when one is missing or has another shape than MANO's."""
    with open(path, "rb") as f:
        raw = _ManoUnpickler(f, encoding="latin1").load()
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of MANO arrays, got {type(raw).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, shape in MODEL_SHAPES.items():
        if key not in raw:
            raise ValueError(f"{path}: {key}: missing")
        arr = np.asarray(_to_array(raw[key]))
        if arr.shape != shape:
            raise ValueError(f"{path}: {key}: expected shape {shape}, got {arr.shape}")
        out[key] = arr.astype(np.int64 if key in ("f", "kintree_table") else np.float64)
    return out


def fix_left_shapedirs(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HOT3D's fix for the released MANO_LEFT.pkl, whose x shape directions equal the right hand's instead
    of being mirrored: when they (nearly) coincide, the left hand's x components are negated."""
    if np.abs(left["shapedirs"][:, 0, :] - right["shapedirs"][:, 0, :]).sum() >= 1.0:
        return left
    fixed = dict(left)
    fixed["shapedirs"] = left["shapedirs"].copy()
    fixed["shapedirs"][:, 0, :] *= -1.0
    return fixed


@lru_cache(maxsize=4)
def load_models(mano_dir: str, num_pca_comps: int, flat_hand_mean: bool) -> dict[Side, Any]:
    """One smplx MANO layer per side (float64), built once per process from `mano_dir`'s pickles."""
    import smplx
    import torch
    from smplx.utils import Struct

    files = mano_files(Path(mano_dir))
    arrays = {s: load_mano_arrays(files[s]) for s in SIDES}
    arrays["left"] = fix_left_shapedirs(arrays["left"], arrays["right"])
    models = {}
    for side in SIDES:
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 shape coefficients
            models[side] = smplx.MANO(
                str(files[side]), is_rhand=side == "right", data_struct=Struct(**arrays[side]),
                use_pca=True, num_pca_comps=num_pca_comps, flat_hand_mean=flat_hand_mean,
                dtype=torch.float64,
            )  # fmt: skip
    return models


# ------------------------------------------------------------------------------------------- forward


def tip_vertices() -> np.ndarray:
    """smplx's MANO fingertip vertex ids, thumb to pinky."""
    from smplx.vertex_ids import vertex_ids

    return np.array([vertex_ids["mano"][name] for name in TIP_NAMES], dtype=np.int64)


def axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrices `[..., 3, 3]` -> axis-angle vectors `[..., 3]` (angle in [0, pi])."""
    q = matrix_to_quaternion(R)
    v = q[..., 1:]
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(norm, q[..., :1])
    scale = np.where(norm > 1e-12, angle / np.maximum(norm, 1e-300), 2.0)
    return v * scale


def keypoints(
    model: Any, pose: np.ndarray, betas: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """World keypoints `[N, 21, 3]` (MANO-21 order) of one side's smplx layer.

    `pose [N, P]` PCA coefficients (P = the layer's count), `betas [N, 10]`, `rotation [N, 3, 3]` the global
    orientation, `translation [N, 3]` added to every point (smplx `transl`)."""
    import torch

    n = pose.shape[0]
    want = {
        "pose": (n, model.num_pca_comps),
        "betas": (n, N_BETAS),
        "rotation": (n, 3, 3),
        "translation": (n, 3),
    }
    for name, arr in (("pose", pose), ("betas", betas), ("rotation", rotation), ("translation", translation)):
        if arr.shape != want[name]:
            raise ValueError(f"MANO {name}: expected shape {want[name]}, got {arr.shape}")
    tips, out = tip_vertices(), np.empty((n, 21, 3))
    for start in range(0, n, BATCH):
        sl = slice(start, start + BATCH)
        args = {"hand_pose": pose[sl], "betas": betas[sl], "global_orient": axis_angle(rotation[sl]),
                "transl": translation[sl]}  # fmt: skip
        with torch.no_grad():
            res = model(
                **{k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float64) for k, v in args.items()}
            )
        joints, verts = res.joints.numpy(), res.vertices.numpy()
        out[sl] = np.concatenate([joints, verts[:, tips]], axis=1)[:, OPENPOSE_FROM_NATIVE]
    return out
