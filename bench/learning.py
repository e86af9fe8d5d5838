"""Does the model learn? Train a config on real samples and score it against the baselines as it trains.

    .venv/bin/python bench/learning.py --config small --steps 300 --eval-every 50 --out bench-out/small
    .venv/bin/python bench/learning.py --config tiny --root /tmp/learn/datasets ...   # reuse built data

The data: the genuine files in ../shared/realdata (EgoDex; Bridge via `ingest run oxe` and the GR00T demo via
`ingest run lerobot_gr00t_gr1` with --sources), converted into a temporary root, latents with random
DINOv3 weights (`ingest latents --random-weights`), `catalog build`. Training is `train.loop`'s own step
(`train.setup.build_run` + `train.loop.train_step`); every --eval-every steps the checkpoint is written and
scored by `train.evaluate.evaluate` (held-out episodes, the model beside each baseline). The condition is
the random byte-level text encoder (`random-text`: no VLM weights on a CPU machine). Prints per eval
point the model and each baseline, then the first step at which each baseline is beaten; writes
OUT/learning.json (every figure) and OUT/learning.png (the curves).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.evaluate import ALL, EVAL_TASKS, evaluate  # noqa: E402
from train.loop import train_step  # noqa: E402
from train.setup import build_run  # noqa: E402
from train.state import RANDOM_TEXT, TrainOptions, save_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
# source name -> folder under realdata
SOURCES = {
    "egodex": "egodex",
    "oxe": "oxe_bridge_rlds/bridge_dataset/1.0.0",
    "lerobot_gr00t_gr1": "gr00t_demo_robot_sim.PickNPlace",
}


def _cli(name: str, *args: str, check: bool = True) -> bool:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([str(Path(sys.executable).parent / name), *args], check=check, env=env)
    return done.returncode == 0


def build_data(root: Path, sources: list[str]) -> Path:
    """Ingest each source's realdata into root/datasets, cache random-weight latents, build the catalog."""
    datasets = root / "datasets"
    for source in sources:
        src = REALDATA / SOURCES[source]
        if not src.exists():
            print(f"skip {source}: {src} absent")
            continue
        if not _cli("ingest", "run", source, "--input", str(src), "--output", str(datasets), check=False):
            print(f"skip {source}: ingest run failed (see above)")
            continue
        for ds in sorted(p for p in datasets.iterdir() if p.is_dir() and p.name != "catalog"):
            _cli("ingest", "latents", str(ds), "--random-weights")
    _cli("catalog", "build", str(datasets))
    return datasets


def _figures(report, one_step) -> dict:
    """{task: {"model": x, "model_1step": x1, baseline: y, ...}} over all datasets. `model_1step` is the
    one-Euler-step prediction from pure noise, i.e. the model's estimate of the conditional mean: unlike a
    sample it pays no sampling variance (a perfect sampler's MSE is twice the conditional variance)."""
    out = {}
    for task, _, _ in EVAL_TASKS:
        s, s1 = report.score(task, ALL), one_step.score(task, ALL)
        if s is not None:
            out[task] = {"model": s.model, "model_mean": s.model_mean, "model_1step": s1.model,
                         "samples": s.samples, **s.baselines}  # fmt: skip
    return out


def _by_dataset(report) -> dict:
    """{task: {dataset: {"model": x, "model_mean": m, baseline: y, ...}}} for each held-out dataset."""
    out: dict = {}
    for s in report.scores:
        if s.dataset != ALL:
            out.setdefault(s.task, {})[s.dataset] = {"model": s.model, "model_mean": s.model_mean,
                                                     "samples": s.samples, **s.baselines}  # fmt: skip
    return out


NOT_BASELINES = ("model", "model_mean", "model_1step", "samples")


def train_and_evaluate(opts: TrainOptions, eval_every: int, samples: int, draws: int) -> dict:
    run, loader, extra = build_run(opts, 0, 1, torch.device("cpu"), None)
    opts.out.mkdir(parents=True, exist_ok=True)
    params = sum(p.numel() for p in run.model.parameters())
    points, losses, times = [], [], []
    for step, batch in zip(range(opts.steps), loader, strict=False):
        started = time.perf_counter()
        metrics = train_step(run, batch, step, 0, extra["losses_fn"])
        times.append(time.perf_counter() - started)
        losses.append({"step": step, "loss": metrics["loss"], **metrics["tasks"]})
        if (step + 1) % 50 == 0:
            print(f"step {step + 1} loss {metrics['loss']:.4f} {1000 * times[-1]:.0f} ms", flush=True)
        if (step + 1) % eval_every == 0 or step + 1 == opts.steps:
            save_checkpoint(opts.out, run, extra["checkpoint_extra"])
            report = evaluate(opts.out, n=samples, draws=draws)
            one_step = evaluate(opts.out, n=samples, draws=1, steps=1)
            points.append({"step": step + 1, "loss": metrics["loss"], "tasks": _figures(report, one_step),
                           "by_dataset": _by_dataset(report)})  # fmt: skip
            _print_point(points[-1])
    ms = sorted(times[1:] or times)
    return {"config": opts.config, "params": params, "steps": opts.steps, "batch_size": opts.batch_size,
            "lr": opts.lr, "weight_decay": opts.weight_decay, "ema": opts.ema,
            "normalize_per": opts.normalize_per,
            "ms_per_step_median": 1000 * ms[len(ms) // 2], "eval_samples": samples,
            "draws": draws, "points": points, "losses": losses,
            "first_beaten": first_beaten(points), "first_beaten_mean": first_beaten(points, "model_mean"),
            "first_beaten_1step": first_beaten(points, "model_1step")}  # fmt: skip


def first_beaten(points: list[dict], key: str = "model") -> dict[str, dict[str, int | None]]:
    """{task: {baseline: the first eval step whose model error (`key`: the sampled "model" or the
    one-step "model_1step") is below it, or None}}."""
    out: dict[str, dict[str, int | None]] = {}
    for point in points:
        for task, figs in point["tasks"].items():
            row = out.setdefault(task, {})
            for name, value in figs.items():
                if name in NOT_BASELINES:
                    continue
                row.setdefault(name, None)
                if row[name] is None and None not in (value, figs[key]) and figs[key] < value:
                    row[name] = point["step"]
    return out


def _print_point(point: dict) -> None:
    parts = [f"step {point['step']:5d} loss {point['loss']:.4f}"]
    for task, figs in point["tasks"].items():
        cells = " ".join(f"{k} {v:.4f}" for k, v in figs.items() if k != "samples" and v is not None)
        parts.append(f"  {task}: {cells}")
    print("\n".join(parts), flush=True)


def plot(result: dict, path: Path, others: list[dict] = ()) -> None:
    """One panel per task: each run's model curve, the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [result, *others]
    tasks = [t for t, _, _ in EVAL_TASKS if t in result["points"][0]["tasks"]]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in runs:
            steps = [p["step"] for p in r["points"]]
            model = [p["tasks"][task]["model"] for p in r["points"]]
            line = ax.plot(steps, model, "o-", label=f"model {r['config']}")[0]
            one = [p["tasks"][task]["model_1step"] for p in r["points"]]
            ax.plot(steps, one, "s:", color=line.get_color(), label=f"model {r['config']} 1 Euler step")
            mean = [p["tasks"][task].get("model_mean") for p in r["points"]]
            ax.plot(steps, mean, "^--", color=line.get_color(), label=f"model {r['config']} mean of draws")
        last = result["points"][-1]["tasks"][task]
        for i, (name, value) in enumerate((k, v) for k, v in last.items() if k not in NOT_BASELINES):
            if value is not None:
                ax.axhline(value, ls="--", color=f"C{i + len(runs)}", label=name)
        metric = next(m for t, _, m in EVAL_TASKS if t == task)
        ax.set(title=task, xlabel="step", ylabel=metric, yscale="log")  # the zero / mean lines sit far above
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def register_variant(base: str, settings: list[str]) -> str:
    """Register `base` with ModelConfig fields replaced (FIELD=VALUE, validated by pydantic) under a new
    name in `train.configs.CONFIGS` (this process only: the checkpoint stores the whole config)."""
    from train.configs import CONFIGS, ModelConfig

    pairs = dict(item.split("=", 1) for item in settings)
    name = base + "".join(f"+{k}={v}" for k, v in pairs.items())
    CONFIGS[name] = ModelConfig.model_validate({**CONFIGS[base].model_dump(), **pairs, "name": name})
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--ema", type=float, help="keep an EMA of the weights with this decay (scored instead)")
    ap.add_argument("--normalize-per", default="mixture", choices=["mixture", "dataset"])
    ap.add_argument("--weight-decay", type=float, default=TrainOptions.model_fields["weight_decay"].default)
    ap.add_argument("--samples", type=int, default=32, help="held-out samples per eval point")
    ap.add_argument("--draws", type=int, default=2, help="noise draws the model's error is averaged over")
    ap.add_argument("--sources", nargs="+", default=["egodex"], choices=sorted(SOURCES))
    ap.add_argument("--root", type=Path, help="reuse a datasets root (holding catalog/) instead of building")
    ap.add_argument("--mixture", type=Path, default=REPO / "mixtures" / "ei30k.yaml")
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="other runs' learning.json to plot")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="ModelConfig fields to override, e.g. latent_residual=true latent_loss_weight=0.5",
    )
    ap.add_argument("--warmup", type=int, help="warm-up steps (default: 5 %% of the steps)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.set:
        args.config = register_variant(args.config, args.set)
    root = args.root or build_data(Path(tempfile.mkdtemp(prefix="learning-")), args.sources)
    args.out.mkdir(parents=True, exist_ok=True)
    opts = TrainOptions(mixture=args.mixture, root=root, out=args.out / "run", config=args.config,
                        steps=args.steps, batch_size=args.batch_size, lr=args.lr, loader_workers=0,
                        weight_decay=args.weight_decay, ema=args.ema, normalize_per=args.normalize_per,
                        checkpoint_every=args.steps, progress=False, warmup=args.warmup,
                        condition=RANDOM_TEXT)  # fmt: skip
    result = train_and_evaluate(opts, args.eval_every, args.samples, args.draws)
    result["root"] = str(root)
    (args.out / "learning.json").write_text(json.dumps(result, indent=1))
    others = [json.loads(p.read_text()) for p in args.compare]
    plot(result, args.out / "learning.png", others)
    ms = result["ms_per_step_median"]
    print(f"{args.config}: {result['params']:,} parameters, {ms:.0f} ms/step median")
    print("first eval step beating each baseline:", json.dumps(result["first_beaten"]))
    print("the same, mean of the draws' predictions:", json.dumps(result["first_beaten_mean"]))
    print("the same, one Euler step:", json.dumps(result["first_beaten_1step"]))
    print(f"wrote {args.out / 'learning.json'} and {args.out / 'learning.png'}")


if __name__ == "__main__":
    main()
