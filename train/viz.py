"""`train viz`: the paper's two pictures for a few held-out forward-dynamics samples of a trained run.

1. **PCA of predicted vs true future DINO features.** For each sample: the latent grid of the current frame
   o_t, the true future o_{t+K} and the model's forecast of it (forward dynamics: the Euler sampler given the
   sample's real action chunk), all in raw DINO units (un-normalised). One PCA (3 components) is fitted on
   the sample's true future grid and every grid is projected with it; each component is mapped to a colour
   channel with the true grid's min / max, so the three grids' colours are comparable. Beside them, where
   the dataset has the video, the frames t and t+K as the encoder saw them (224 x 224, the latents'
   resize policy).
2. **Action-conditioned attention.** The same forward-dynamics sampling is run twice with the same noise:
   with the sample's action chunk and with the no-op chunk (every step the action that holds the current
   state: zero position delta, identity rotation, the state's gripper and keypoints, `hold_action`; the
   training mean where the state is masked). With `capture_attention` on, A[n] is the attention the visual
   token of grid position n (its channels: o_{t-3}, o_t and the future slot being denoised) puts on the 16
   chunk-action tokens (summed over them), averaged over heads, blocks and Euler steps. The picture is
   |A(action) - A(no-op)| over the grid, overlaid on frame t: where the forecast reads the action
   differently when the action moves.

Samples are `train eval`'s held-out samples (`RunView.held_out`, task forward dynamics only); PNGs, a
contact sheet per picture, `viz.npz` (every array drawn) and `viz.json` (what each sample is) go to OUT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

VIZ_TASKS = ("forward_dynamics",)
IMAGE = 224
NPZ, JSON = "viz.npz", "viz.json"
DRAWS_PER_SAMPLE = 8  # held-out draws per wanted sample, to find distinct ones


@dataclass
class VizSample:
    """One held-out sample's arrays (numpy), grid positions row-major (grid x grid patches)."""

    dataset: str
    episode_index: int
    frame_index: int
    future_frame: int
    current: np.ndarray  # [P, L] raw DINO features of o_t (patch tokens only)
    future: np.ndarray  # [P, L] true o_{t+K}
    predicted: np.ndarray  # [P, L] the forward-dynamics forecast of o_{t+K}
    attention_action: np.ndarray  # [P] A with the sample's actions
    attention_noop: np.ndarray  # [P] A with the no-op chunk
    frames: np.ndarray | None  # uint8 [2, 224, 224, 3]: frames t and t+K, or None without video

    @property
    def grid(self) -> int:
        return int(round(len(self.future) ** 0.5))


# --------------------------------------------------------------------------------------------------
# PCA colours
# --------------------------------------------------------------------------------------------------


def pca_basis(features: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(mean [L], components [k, L]) of features [P, L] by SVD of the centred matrix; each component's sign
    makes its largest-magnitude loading positive, so the basis is unique."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    return mean, comps * signs[:, None]


def pca_colours(grids: list[np.ndarray], fit_on: np.ndarray) -> list[np.ndarray]:
    """Each grid [P, L] projected on the 3-component PCA of `fit_on` and mapped to RGB in [0, 1] with the
    min / max of `fit_on`'s own projection (values outside are clipped): [P, 3] each."""
    mean, comps = pca_basis(fit_on)
    ref = (np.asarray(fit_on, np.float64) - mean) @ comps.T
    lo, span = ref.min(axis=0), np.maximum(ref.max(axis=0) - ref.min(axis=0), 1e-12)
    return [np.clip(((np.asarray(g, np.float64) - mean) @ comps.T - lo) / span, 0.0, 1.0) for g in grids]


# --------------------------------------------------------------------------------------------------
# Action-conditioned attention
# --------------------------------------------------------------------------------------------------


def noop_actions(batch: Any, norm: Any) -> Tensor:
    """The "stay still" chunk [B, C, A] (normalised): every step the action that holds the state at t
    (`train.batch.hold_action`); dimensions it cannot give (masked state) get the training mean, and
    dimensions outside the embodiment's `action_dims` are 0, as in the data."""
    from train.batch import hold_action

    hold, valid = hold_action(norm.unnormalize_state_for(batch.dataset, batch.state), batch.state_mask)
    still = norm.normalize_actions_for(batch.dataset, hold, valid & batch.action_dims)
    return still[:, None, :].expand_as(batch.actions).contiguous()


def action_attention(stores: list[list[Tensor]], n_sinks: int, n_visual: int, chunk: int) -> Tensor:
    """[B, n_visual]: per visual position, the attention its query puts on the chunk-action tokens (the
    last `chunk` keys), summed over them and averaged over heads, blocks and forward calls."""
    maps = [p[:, :, n_sinks : n_sinks + n_visual, -chunk:].sum(-1).mean(1) for s in stores for p in s]
    return torch.stack(maps).mean(0)


def forecast_with_attention(
    model: Any, batch: Any, cond: tuple[Tensor, Tensor], steps: int | None, seed: int
) -> tuple[Tensor, Tensor]:
    """(forward-dynamics forecast [B, N, L] normalised, attention on the actions [B, N]) with noise `seed`."""
    from train.flow import predict_future
    from train.model import capture_attention

    cfg = model.config
    gen = torch.Generator(device=batch.actions.device).manual_seed(seed)
    with capture_attention(model) as stores:
        future = predict_future(model, batch, cond[0], cond[1], steps, gen)
    return future, action_attention(stores, cfg.n_sink_tokens, cfg.n_latent_tokens, cfg.chunk)


def attention_difference(
    model: Any, batch: Any, cond: tuple[Tensor, Tensor], norm: Any, steps: int | None, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(forecast with the real actions, A(action), A(no-op)), both runs with the same noise."""
    future, a_act = forecast_with_attention(model, batch, cond, steps, seed)
    still = replace(batch, actions=noop_actions(batch, norm))
    _, a_noop = forecast_with_attention(model, still, cond, steps, seed)
    return future, a_act, a_noop


# --------------------------------------------------------------------------------------------------
# Frames (PyAV, here only: train/data.py reads no video)
# --------------------------------------------------------------------------------------------------


def encoder_size(height: int, width: int, resize: str) -> tuple[int, int]:
    """(h, w) before the crop / pad: short side to 224 (`center_crop`) or long side to 224 (`letterbox`)."""
    scale = IMAGE / (min(height, width) if resize == "center_crop" else max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def encoder_view(rgb: np.ndarray, resize: str) -> np.ndarray:
    """uint8 [h, w, 3] at `encoder_size` -> [224, 224, 3] the way `ingest latents` framed it: a centre crop
    (`center_crop`) or black padding around it (`letterbox`)."""
    h, w = rgb.shape[:2]
    if resize == "center_crop":
        top, left = (h - IMAGE) // 2, (w - IMAGE) // 2
        return rgb[top : top + IMAGE, left : left + IMAGE]
    out = np.zeros((IMAGE, IMAGE, 3), dtype=np.uint8)
    top, left = (IMAGE - h) // 2, (IMAGE - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out


def read_frames(path: Path, indices: list[int], resize: str) -> dict[int, np.ndarray]:
    """The encoder's view (`encoder_view`) of a video's frames at decoded-frame indices (the episode's
    frame_index), scaled in the codec scaler as `ingest latents` scales them; missing ones are absent."""
    import av

    wanted, out = set(indices), {}
    with av.open(str(path)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i in wanted:
                h, w = encoder_size(frame.height, frame.width, resize)
                rgb = frame.reformat(w, h, format="rgb24", interpolation="AREA").to_ndarray()
                out[i] = encoder_view(rgb, resize)
            if i >= max(wanted):
                break
    return out


def _episode_frames(info: Any, episode: int, frames: list[int]) -> np.ndarray | None:
    from schemas.lerobot import VIDEO_PATH

    path = info.path / VIDEO_PATH.format(
        episode_chunk=episode // info.chunks_size, video_key=info.camera, episode_index=episode
    )
    if not path.exists():
        return None
    got = read_frames(path, frames, info.latents.resize)
    return np.stack([got[i] for i in frames]) if len(got) == len(frames) else None


# --------------------------------------------------------------------------------------------------
# Collecting and drawing
# --------------------------------------------------------------------------------------------------


def collect(run_dir: Path, n: int = 4, steps: int | None = None, seed: int = 0,
            mixture: Path | None = None, root: Path | None = None) -> list[VizSample]:  # fmt: skip
    """The arrays of `n` distinct held-out forward-dynamics samples of the run: `train eval`'s draws (with
    this seed), repeats of a (dataset, episode, frame) skipped, up to DRAWS_PER_SAMPLE x n draws."""
    from train.evaluate import open_run

    run = open_run(run_dir, mixture, root, seed)
    data = run.held_out_data(VIZ_TASKS)
    infos = {d.name: d for d in data.datasets}
    future_offset = data.cfg.future_offset
    out: list[VizSample] = []
    seen: set[tuple[str, int, int]] = set()
    for batch in run.held_out(DRAWS_PER_SAMPLE * n, VIZ_TASKS, data=data):
        keys = zip(batch.dataset, batch.episode_index.tolist(), batch.frame_index.tolist(), strict=True)
        keep = []
        for i, key in enumerate(keys):
            if key not in seen and len(seen) < n:
                seen.add(key)
                keep.append(i)
        if not keep:
            continue
        batch = batch.select(torch.tensor(keep)).to(run.device)
        future, a_act, a_noop = attention_difference(
            run.model, batch, run.condition(batch), run.normalizer, steps, seed
        )
        raw = lambda x: run.normalizer.unnormalize_latents(x.float()).cpu().numpy()  # noqa: E731
        now, true, pred = raw(batch.obs_latents[:, -1]), raw(batch.future_latents), raw(future)
        for i in range(len(batch)):
            p = _patches(now.shape[1])
            ds, ep, t = batch.dataset[i], int(batch.episode_index[i]), int(batch.frame_index[i])
            out.append(VizSample(
                dataset=ds, episode_index=ep, frame_index=t, future_frame=t + future_offset,
                current=now[i, p], future=true[i, p], predicted=pred[i, p],
                attention_action=a_act[i, p].cpu().numpy(), attention_noop=a_noop[i, p].cpu().numpy(),
                frames=_episode_frames(infos[ds], ep, [t, t + future_offset]),
            ))  # fmt: skip
    return out


def _patches(n_tokens: int) -> slice:
    """The patch tokens of a latent grid: all of them, or the last side^2 after CLS and registers."""
    side = int(n_tokens**0.5)
    return slice(n_tokens - side * side, n_tokens)


def _image(colours: np.ndarray, grid: int) -> np.ndarray:
    return colours.reshape(grid, grid, -1)


def _pca_row(axes: Any, s: VizSample) -> dict[str, np.ndarray]:
    rgb = pca_colours([s.current, s.future, s.predicted], fit_on=s.future)
    mse = float(((s.predicted - s.future) ** 2).mean())
    copy = float(((s.current - s.future) ** 2).mean())
    panels = []
    if s.frames is not None:
        panels += [
            (s.frames[0], f"frame t = {s.frame_index}"),
            (s.frames[1], f"frame t+K = {s.future_frame}"),
        ]
    predicted = f"PCA predicted o_t+K\nraw MSE {mse:.3g} (copy o_t: {copy:.3g})"
    panels += [(_image(rgb[0], s.grid), "PCA o_t"), (_image(rgb[1], s.grid), "PCA true o_t+K"),
               (_image(rgb[2], s.grid), predicted)]  # fmt: skip
    _draw(axes, panels)
    return {"current": rgb[0], "future": rgb[1], "predicted": rgb[2]}


def _attention_row(axes: Any, s: VizSample) -> None:
    diff = np.abs(s.attention_action - s.attention_noop)
    g = s.grid
    hi = max(float(s.attention_action.max()), float(s.attention_noop.max()), 1e-12)
    if s.frames is not None:
        _draw(axes[:1], [(s.frames[0], f"frame t = {s.frame_index}")])
        axes = axes[1:]
    panels = [(s.attention_action.reshape(g, g), "A(action)"), (s.attention_noop.reshape(g, g), "A(no-op)")]
    for ax, (img, title) in zip(axes, panels, strict=False):
        ax.imshow(img, cmap="viridis", vmin=0, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    ax = axes[2]
    extent = (0, IMAGE, IMAGE, 0)
    if s.frames is not None:
        ax.imshow(s.frames[0], extent=extent)
    ax.imshow(diff.reshape(g, g), cmap="magma", alpha=0.6 if s.frames is not None else 1.0,
              extent=extent, interpolation="bilinear")  # fmt: skip
    ax.set_title(f"|A(action) - A(no-op)| (max {diff.max():.2g})", fontsize=8)


def _draw(axes: Any, panels: list[tuple[np.ndarray, str]]) -> None:
    for ax, (img, title) in zip(axes, panels, strict=False):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=8)


def _figure(rows: int, cols: int) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()  # panels that get an image show it without ticks; the others stay blank
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_viz(samples: list[VizSample], out: Path, title: str = "") -> list[Path]:
    """sample_XX.png (PCA row over the attention row) per sample, pca.png and attention.png (one row per
    sample), viz.npz (every array drawn) and viz.json (which frame each sample is)."""
    out.mkdir(parents=True, exist_ok=True)
    video = any(s.frames is not None for s in samples)
    cols = {"pca": 5 if video else 3, "attention": 4 if video else 3}
    written, arrays = [], {}
    sheets = {name: _figure(len(samples), c) for name, c in cols.items()}
    for i, s in enumerate(samples):
        fig, axes = _figure(2, cols["pca"])
        rgb = _pca_row(axes[0], s)
        _attention_row(axes[1], s)
        fig.suptitle(f"{title}{s.dataset} episode {s.episode_index} frame {s.frame_index}", fontsize=9)
        written.append(_save(fig, out / f"sample_{i:02d}.png"))
        _pca_row(sheets["pca"][1][i], s)
        _attention_row(sheets["attention"][1][i], s)
        drawn = {"current": s.current, "future": s.future, "predicted": s.predicted,
                 "attention_action": s.attention_action, "attention_noop": s.attention_noop}  # fmt: skip
        for key, value in {**{f"rgb_{k}": v for k, v in rgb.items()}, **drawn}.items():
            arrays[f"{i}/{key}"] = value
    for name, (fig, _) in sheets.items():
        fig.suptitle(f"{title}{'PCA of DINO features' if name == 'pca' else 'action-conditioned attention'}")
        written.append(_save(fig, out / f"{name}.png"))
    np.savez_compressed(out / NPZ, **arrays)
    meta = [{"dataset": s.dataset, "episode_index": s.episode_index, "frame_index": s.frame_index,
             "future_frame": s.future_frame, "video": s.frames is not None} for s in samples]  # fmt: skip
    (out / JSON).write_text(json.dumps(meta, indent=1) + "\n")
    return [*written, out / NPZ, out / JSON]


def visualize(run_dir: Path, out: Path | None = None, n: int = 4, steps: int | None = None, seed: int = 0,
              mixture: Path | None = None, root: Path | None = None) -> list[Path]:  # fmt: skip
    """`train viz`: collect `n` held-out samples of the run and write the pictures to `out` (RUN/viz)."""
    samples = collect(run_dir, n, steps, seed, mixture, root)
    if not samples:
        raise ValueError(f"{run_dir}: no held-out forward-dynamics sample")
    return write_viz(samples, out or run_dir / "viz", title=f"{run_dir.name}: ")
