"""`train eval`: action L1 on held-out episodes (the paper's scaling proxy) and forward-dynamics error,
each beside the baselines of `train/baselines.py` scored on the same samples with the same masks.

- policy: sample the 16-step chunk with the Euler sampler (visual register in the future slot);
- inverse dynamics: the same, given the clean future latent; scored on the first K steps (the steps
  between the current and the future frame), as trained;
- forward dynamics: predict the future latent from the clean actions; error in normalised latent units.
Action L1 is in the data's own units (metres, 6D rotation, gripper), over real (unmasked) values only.
The model's error is the mean over `draws` noise draws (generators seeded `seed * 1000 + d`); beside it,
`model_mean` scores the mean of the draws' predictions: an estimate of the conditional mean, which pays no
sampling variance (a perfect sampler's squared error is twice the conditional variance, a point estimate's
once). Every score is given per dataset and over all of them ("all").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from train.state import CHECKPOINT, TrainOptions, load_checkpoint

ALL = "all"
EVAL_JSON = "eval.json"
# task name, task id, metric: the tasks `train eval` scores, in the order it reports them
EVAL_TASKS: tuple[tuple[str, int, str], ...] = (
    ("policy", 0, "action_l1"),
    ("inverse_dynamics", 2, "action_l1"),
    ("forward_dynamics", 1, "latent_mse"),
)


class Score(BaseModel):
    """One task on one dataset (or "all"): the model's error and each baseline's, lower is better."""

    task: str
    dataset: str
    metric: str  # "action_l1" (data units) or "latent_mse" (normalised latent units)
    samples: int
    model: float | None  # mean of `model_draws`
    model_draws: list[float | None]
    model_mean: float | None = None  # the error of the mean of the draws' predictions
    baselines: dict[str, float | None]

    @property
    def beats(self) -> dict[str, bool | None]:
        """Whether the model's error is below each baseline's (None when either is missing)."""
        return _below(self.model, self.baselines)

    @property
    def mean_beats(self) -> dict[str, bool | None]:
        """The same for the mean of the draws' predictions."""
        return _below(self.model_mean, self.baselines)


def _below(x: float | None, baselines: dict[str, float | None]) -> dict[str, bool | None]:
    return {k: None if v is None or x is None else x < v for k, v in baselines.items()}


class EvalReport(BaseModel):
    run: Path
    step: int
    samples: int
    draws: int
    policy_action_l1: float | None
    inverse_action_l1: float | None
    forward_latent_mse: float | None
    counts: dict[str, int]
    scores: list[Score]

    def score(self, task: str, dataset: str = ALL) -> Score | None:
        return next((s for s in self.scores if s.task == task and s.dataset == dataset), None)


class _Sums:
    """Masked sums and counts per (task, dataset, predictor), pooled per dataset and over all."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str], list[float]] = {}
        self.samples: dict[tuple[str, str], int] = {}

    def add(
        self, task: str, name: str, datasets: list[str], values: torch.Tensor, valid: torch.Tensor
    ) -> None:
        """values / valid [B, ...]: sample i's valid values count for datasets[i] and for "all"."""
        total = torch.where(valid, values, 0.0).flatten(1).sum(1).tolist()
        count = valid.flatten(1).sum(1).tolist()
        for ds, v, c in zip(datasets, total, count, strict=True):
            for key in (ds, ALL):
                acc = self.sums.setdefault((task, key, name), [0.0, 0])
                acc[0] += v
                acc[1] += c

    def count(self, task: str, datasets: list[str]) -> None:
        for ds in datasets:
            for key in (ds, ALL):
                self.samples[(task, key)] = self.samples.get((task, key), 0) + 1

    def value(self, task: str, dataset: str, name: str) -> float | None:
        total, count = self.sums.get((task, dataset, name), (0.0, 0))
        return total / count if count else None

    def scores(self, draws: int) -> list[Score]:
        from train.baselines import ACTION_BASELINES, LATENT_BASELINES

        out = []
        for task, _, metric in EVAL_TASKS:
            names = ACTION_BASELINES if metric == "action_l1" else LATENT_BASELINES
            keys = sorted(ds for t, ds in self.samples if t == task and ds != ALL)
            for ds in [*keys, ALL] if keys else [ALL]:
                per_draw = [self.value(task, ds, f"model:{d}") for d in range(draws)]
                real = [v for v in per_draw if v is not None]
                model = sum(real) / len(real) if real else None
                baselines = {b: self.value(task, ds, b) for b in names}
                n = self.samples.get((task, ds), 0)
                out.append(Score(task=task, dataset=ds, metric=metric, samples=n, model=model,
                                 model_draws=per_draw, model_mean=self.value(task, ds, "model:mean"),
                                 baselines=baselines))  # fmt: skip
        return out


@dataclass
class RunView:
    """A run rebuilt from its folder for evaluation (`train eval`, `train viz`): its last checkpoint's model
    (eval mode), options (mixture / root / seed as asked, no loader workers), normaliser and condition
    encoder, on `device`."""

    step: int
    model: Any
    opts: TrainOptions
    normalizer: Any
    encoder: Any
    device: torch.device
    embodiments: list[str] | None = None  # the ids the model was built with (per-embodiment heads)

    def held_out(self, n: int, tasks: tuple[str, ...], data: Any = None) -> list:
        """`n` held-out samples of `tasks` (`train.data.build_eval_samples`), the same for the same seed."""
        from train.data import build_eval_samples
        from train.setup import data_config

        cfg = data_config(self.opts, 1)
        return build_eval_samples(cfg, n, normalizer=self.normalizer, tasks=tasks, data=data,
                                  embodiments=self.embodiments)  # fmt: skip

    def held_out_data(self, tasks: tuple[str, ...]) -> Any:
        """The held-out `TrainingData` the samples of `held_out` come from (datasets, paths, cameras)."""
        from train.data import TrainingData
        from train.setup import data_config

        return TrainingData.open(data_config(self.opts, 1), self.normalizer, split="eval", tasks=tasks,
                                 embodiments=self.embodiments)  # fmt: skip

    def condition(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's condition tokens: cached with the batch, or the encoder on captions and frame t."""
        from train.conditioning import condition_of

        with torch.no_grad():
            tokens, mask = condition_of(self.encoder, batch)
        return tokens.to(self.device), mask.to(self.device)


def open_run(run_dir: Path, mixture: Path | None = None, root: Path | None = None, seed: int = 0) -> RunView:
    """Rebuild the run in `run_dir` from its checkpoint (a `--ema` run's averaged weights); `mixture` /
    `root` default to the run's."""
    from train.configs import ModelConfig
    from train.model import LDAModel
    from train.normalize import Normalizer
    from train.setup import condition_encoder, run_embodiments

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no {CHECKPOINT} in {run_dir}")
    model = LDAModel(ModelConfig.model_validate(state["model_config"]))
    model.load_state_dict({**state["model"], **state.get("ema", {})})  # a --ema run: its averaged weights
    opts = TrainOptions.model_validate(state["options"])
    opts = opts.model_copy(update={"mixture": mixture or opts.mixture, "root": root or opts.root,
                                   "loader_workers": 0, "seed": seed})  # fmt: skip
    norm = Normalizer.model_validate(state["normalizer"])
    encoder = condition_encoder(opts, device)
    if "condition" in state:  # a fine-tuned (--unfreeze-vlm) encoder
        encoder.load_state_dict(state["condition"])
    encoder.train(False)
    return RunView(int(state["step"]), model.to(device).eval(), opts, norm, encoder, device,
                   run_embodiments(state))  # fmt: skip


def evaluate(run_dir: Path, mixture: Path | None = None, root: Path | None = None, n: int = 64,
             steps: int | None = None, seed: int = 0, draws: int = 4) -> EvalReport:  # fmt: skip
    """Score the run's last checkpoint and the baselines on `n` held-out samples of the mixture (default:
    the run's); the model's errors are averaged over `draws` noise draws."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    run = open_run(run_dir, mixture, root, seed)
    model, norm, device = run.model, run.normalizer, run.device
    batches = run.held_out(n, tuple(t for t, _, _ in EVAL_TASKS))
    gens = [torch.Generator(device=device).manual_seed(seed * 1000 + d) for d in range(draws)]
    sums = _Sums()
    for batch in batches:
        batch = batch.to(device)
        tokens, mask = run.condition(batch)
        for task, tid, _ in EVAL_TASKS:
            keep = (batch.task == tid) & (batch.future_valid | (tid == 0))
            if not keep.any():
                continue
            idx = keep.nonzero()[:, 0]
            sub, cond = batch.select(idx), (tokens[idx], mask[idx])
            sums.count(task, sub.dataset)
            if task == "forward_dynamics":
                _score_forward(model, sub, cond, steps, gens, sums)
            else:
                _score_actions(model, sub, cond, norm, steps, gens, sums, inverse=task == "inverse_dynamics")
    scores = sums.scores(draws)
    overall = {s.task: s.model for s in scores if s.dataset == ALL}
    counts = {t: int(sum(int((b.task == i).sum()) for b in batches)) for i, t in enumerate(("policy",
              "forward_dynamics", "inverse_dynamics"))}  # fmt: skip
    return EvalReport(
        run=run_dir, step=run.step, samples=sum(len(b) for b in batches), draws=draws,
        policy_action_l1=overall.get("policy"), inverse_action_l1=overall.get("inverse_dynamics"),
        forward_latent_mse=overall.get("forward_dynamics"), counts=counts, scores=scores,
    )  # fmt: skip


def _score_actions(model, batch, cond, norm, steps, gens, sums: _Sums, inverse: bool) -> None:
    """Action L1 (data units) of each draw and each baseline over the real values (inverse: first K steps)."""
    from train.baselines import action_baselines
    from train.flow import sample_actions

    task = "inverse_dynamics" if inverse else "policy"
    truth = norm.unnormalize_actions_for(batch.dataset, batch.actions, batch.action_mask)
    valid = batch.action_mask
    if inverse:
        k = model.config.future_obs_index
        valid = valid & (torch.arange(valid.shape[1], device=valid.device) < k)[None, :, None]
    preds = []
    for d, gen in enumerate(gens):
        pred = sample_actions(model, batch, cond[0], cond[1], steps, gen, inverse=inverse)
        pred = norm.unnormalize_actions_for(batch.dataset, pred, batch.action_mask)
        sums.add(task, f"model:{d}", batch.dataset, (pred - truth).abs(), valid)
        preds.append(pred)
    sums.add(task, "model:mean", batch.dataset, (torch.stack(preds).mean(0) - truth).abs(), valid)
    for name, pred in action_baselines(batch, norm).items():
        sums.add(task, name, batch.dataset, (pred - truth).abs(), valid)


def _score_forward(model, batch, cond, steps, gens, sums: _Sums) -> None:
    """Forward-dynamics latent MSE (normalised units), one value per sample, for each draw and baseline."""
    from train.baselines import latent_baselines
    from train.flow import predict_future

    every = torch.ones(len(batch), 1, dtype=torch.bool, device=batch.future_latents.device)
    futures = []
    for d, gen in enumerate(gens):
        future = predict_future(model, batch, cond[0], cond[1], steps, gen)
        sums.add("forward_dynamics", f"model:{d}", batch.dataset, _mse(future, batch.future_latents), every)
        futures.append(future)
    mean = torch.stack(futures).mean(0)
    sums.add("forward_dynamics", "model:mean", batch.dataset, _mse(mean, batch.future_latents), every)
    for name, pred in latent_baselines(batch).items():
        sums.add("forward_dynamics", name, batch.dataset, _mse(pred, batch.future_latents), every)


def _mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """[B, 1]: each sample's mean squared error over tokens and channels."""
    return ((pred.float() - truth) ** 2).mean(dim=(1, 2))[:, None]


def report_tables(report: EvalReport) -> list:
    """rich Tables: action L1 and forward-dynamics latent MSE, the model beside each baseline."""
    from rich.table import Table

    tables = []
    many = len({s.dataset for s in report.scores}) > 2  # more than one dataset besides "all"
    shown = [s for s in report.scores if many or s.dataset != ALL]  # one dataset: its name, not "all"
    shown += [s for s in report.scores if s.dataset == ALL and all(t.task != s.task for t in shown)]
    for metric, title in (("action_l1", "held-out action L1 (data units)"),
                          ("latent_mse", "held-out forward-dynamics latent MSE (normalised)")):  # fmt: skip
        rows = [s for s in report.scores if s in shown and s.metric == metric]
        if not rows:
            continue
        names = list(rows[0].baselines)
        table = Table(
            title=f"{title}; model: mean error of {report.draws} draws, mean of draws: error of "
            "their mean prediction; lower is better"
        )
        for col in ("task", "dataset", "samples", "model", "mean of draws", *names, "model beats"):
            table.add_column(col, justify="left" if col in ("task", "dataset", "model beats") else "right")
        for s in rows:
            beats = "  ".join(
                f"{k} {'n/a' if v is None else 'yes' if v else 'no'}" for k, v in s.beats.items()
            )
            cells = [
                _fmt(s.model, _spread(s.model_draws)),
                _fmt(s.model_mean),
                *(_fmt(s.baselines[b]) for b in names),
            ]
            table.add_row(s.task, s.dataset, str(s.samples), *cells, beats)
        tables.append(table)
    return tables


def _spread(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    if len(real) < 2:
        return None
    mean = sum(real) / len(real)
    return (sum((v - mean) ** 2 for v in real) / (len(real) - 1)) ** 0.5


def _fmt(x: float | None, sd: float | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.5f}" if sd is None else f"{x:.5f} ± {sd:.5f}"
