"""`ingest`: thin typer CLI. Parse, validate with pydantic, call one function; heavy imports stay lazy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from ingest.report.cli import report_command, view_command
from schemas.errors import main_of

if TYPE_CHECKING:
    from ingest.job import RunOptions, RunSummary
    from schemas.captions import CaptionsConfig

app = typer.Typer(help="Ingest embodied datasets into LeRobot v2.1 datasets.", no_args_is_help=True)
ModelDir = Annotated[
    Path | None,
    typer.Option(help="Local folder of a DINOv3ViTModel (default: pipelines.yaml latents.model_dir)."),
]
RandomWeights = Annotated[
    bool, typer.Option(help="No weights: a random ViT-S/16, for demos and tests only (marked as such).")
]
CaptionerOpt = Annotated[
    str | None,
    typer.Option(help="template | cached | vlm (default: pipelines.yaml captions.captioner)."),
]
MANO_DIR_ENV = "EI_FORGE_MANO_DIR"  # the default of `ingest run --mano-dir`
CaptionsFile = Annotated[
    Path | None, typer.Option("--captions", help="cached: JSONL of {source_episode_id, caption} rows.")
]


@app.command()
def run(
    source: Annotated[str, typer.Argument(help="Source name, e.g. egodex (see `ingest sources`).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="The source's root folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Datasets root; writes OUTPUT/NAME.")],
    name: Annotated[str | None, typer.Option(help="Dataset folder name (default: the source name).")] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel conversions (default: CPU count).")] = None,
    limit: Annotated[int | None, typer.Option(help="Convert only the first N source episodes.")] = None,
    max_reject_ratio: Annotated[float, typer.Option(help="Exit non-zero above this reject ratio.")] = 0.05,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    duplicates: Annotated[
        str, typer.Option(help="skip: an episode with a published one's content is recorded, not published.")
    ] = "skip",
    latents: Annotated[bool, typer.Option(help="Then cache DINOv3 latents (see `ingest latents`).")] = False,
    hands: Annotated[
        str | None, typer.Option(help="Then estimate hands with this estimator (see `ingest hands`).")
    ] = None,
    model_dir: ModelDir = None,
    random_weights: RandomWeights = False,
    mano_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of MANO_RIGHT.pkl / MANO_LEFT.pkl (hot3d).", envvar=MANO_DIR_ENV),
    ] = None,
    captioner: CaptionerOpt = None,
    captions: CaptionsFile = None,
    caption_model_dir: Annotated[
        Path | None, typer.Option(help="vlm: local Qwen3-VL folder (default: captions.vlm.model_dir).")
    ] = None,
) -> None:
    """Convert every episode of SOURCE under --input into a LeRobot v2.1 dataset."""
    from ingest.job import RunOptions

    fields = {"workers": workers, "limit": limit, "pipelines": pipelines, "name": name, "address": address,
              "mano_dir": mano_dir}  # fmt: skip
    opts = RunOptions(
        source=source,
        input=input,
        output=output,
        max_reject_ratio=max_reject_ratio,
        progress=progress,
        duplicates=duplicates,
        **{k: v for k, v in fields.items() if v is not None},
    )
    caption_args = CaptionArgs(captioner=captioner, captions=captions, model_dir=caption_model_dir)
    recaption = caption_args if _post_caption(opts.pipelines, caption_args) else None
    then = Then(recaption, hands, latents, model_dir, random_weights)
    summary = _run_job(opts)
    _echo_summary(summary)
    _then(summary.dataset_root, opts, then)
    if summary.reject_ratio > opts.max_reject_ratio:
        typer.echo(f"reject ratio {summary.reject_ratio:.3f} > {opts.max_reject_ratio}", err=True)
        raise typer.Exit(1)


class Then(NamedTuple):
    """What `ingest run` does after publishing: re-caption (not with the template, which the run's caption
    stage applied), estimate hands, cache latents."""

    caption: CaptionArgs | None
    hands: str | None
    latents: bool
    model_dir: Path | None
    random_weights: bool


def _run_job(opts: RunOptions) -> RunSummary:
    from ingest.job import run as run_job
    from schemas.errors import Refused

    try:
        return run_job(opts)
    except (FileNotFoundError, Refused) as e:  # no input, no section fits, 0 found, another dataset there
        typer.echo(f"ingest run: {e}", err=True)
        raise typer.Exit(2) from None


def _echo_summary(summary: RunSummary) -> None:
    """The run's summary: episodes and frames, tiers, what each stage did and took; rejects and left-outs."""
    root = summary.dataset_root
    duplicates = f", {summary.duplicates} duplicates not published" if summary.duplicates else ""
    typer.echo(
        f"{root}: {summary.total_episodes} episodes, {summary.total_frames} frames (this run: "
        f"{summary.published} published, {summary.rejected} rejected, {summary.skipped_published} source "
        f"items already published{duplicates})"
    )
    typer.echo(f"{root}: {summary.tiers.line()}")
    for report in summary.stages:
        typer.echo(f"{root}: stage {report.line()}")
    if summary.rejected:
        typer.echo(f"rejects: {root / 'meta' / 'rejects.jsonl'}", err=True)
    if summary.left_out:
        typer.echo(
            f"ingest run: {len(summary.left_out)} annotated segments left out, their videos are not under "
            f"--input (missing_videos: skip), e.g. {summary.left_out[0]}",
            err=True,
        )


def _then(root: Path, opts: RunOptions, then: Then) -> None:
    if then.caption is not None:
        _caption(root, opts.pipelines, then.caption, opts.address, opts.workers, opts.progress)
    if then.hands:
        _hands(root, opts.pipelines, then.hands, opts.workers, opts.address)
    if then.latents:
        _latents(
            root,
            opts.pipelines,
            then.model_dir,
            then.random_weights,
            opts.address,
            opts.workers,
            opts.progress,
        )


@app.command("latents")
def latents_cmd(
    path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME) written by `ingest run`.")],
    model_dir: ModelDir = None,
    random_weights: RandomWeights = False,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode tasks at once (default: CPUs).")] = None,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read (section latents).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Cache DINOv3 latents of every episode of a dataset; a re-run encodes only what is missing."""
    _latents(path, pipelines, model_dir, random_weights, address, workers, progress)


def _latents(
    path: Path,
    pipelines: Path | None,
    model_dir: Path | None,
    random_weights: bool,
    address: str | None,
    workers: int | None,
    progress: bool,
) -> None:
    from ingest.job import DEFAULT_PIPELINES
    from ingest.latents_job import LatentsOptions, run_latents
    from schemas.pipelines import PipelinesFile

    cfg = PipelinesFile.load(pipelines or DEFAULT_PIPELINES).latents
    if model_dir is not None or random_weights:
        cfg = cfg.model_copy(update={"model_dir": model_dir, "random_weights": random_weights})
    opts = LatentsOptions(dataset=path, latents=cfg, address=address, workers=workers, progress=progress)
    try:
        summary = run_latents(opts)
    except ValueError as e:
        typer.echo(f"ingest latents: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{path}: latents for {summary.files} episode-cameras ({summary.encoded} encoded now, "
        f"{summary.skipped} already cached, {summary.rejected} rejected)"
    )
    if summary.replaced:
        typer.echo(f"{path}: the cache held latents of {summary.replaced}: all encoded again", err=True)
    if summary.random_weights:
        typer.echo("WARNING: RANDOM WEIGHTS: these latents are for demos and tests only", err=True)
    if summary.rejected:
        raise typer.Exit(1)


class CaptionArgs(NamedTuple):
    captioner: str | None
    captions: Path | None
    model_dir: Path | None


@app.command("caption")
def caption_cmd(
    path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME) written by `ingest run`.")],
    captioner: CaptionerOpt = None,
    captions: CaptionsFile = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="vlm: local Qwen3-VL folder (default: captions.vlm.model_dir).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    workers: Annotated[int | None, typer.Option(help="vlm: decode tasks at once (default: CPUs).")] = None,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read (section captions).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Give every episode of a dataset a unified instruction (`caption`); `task_original` is kept."""
    from ingest.job import DEFAULT_PIPELINES

    args = CaptionArgs(captioner=captioner, captions=captions, model_dir=model_dir)
    _caption(path, pipelines or DEFAULT_PIPELINES, args, address, workers, progress)


def _captions_cfg(pipelines: Path, args: CaptionArgs) -> CaptionsConfig:
    from schemas.pipelines import PipelinesFile

    cfg = PipelinesFile.load(pipelines).captions
    update = {"captioner": args.captioner, "captions_file": args.captions}
    cfg = cfg.model_validate({**cfg.model_dump(), **{k: v for k, v in update.items() if v is not None}})
    if args.model_dir is not None:
        cfg.vlm.model_dir = args.model_dir
    return cfg


def _post_caption(pipelines: Path, args: CaptionArgs) -> bool:
    """Whether `ingest run` re-captions after publishing (cached, vlm); exit 2 on a bad option."""
    from pydantic import ValidationError

    try:
        return _captions_cfg(pipelines, args).captioner != "template"
    except ValidationError as e:
        typer.echo(f"ingest run: {e}", err=True)
        raise typer.Exit(2) from None


def _caption(
    path: Path, pipelines: Path, args: CaptionArgs, address: str | None, workers: int | None, progress: bool
) -> None:
    from pydantic import ValidationError

    from ingest.captions.job import CaptionOptions, run_caption

    try:
        cfg = _captions_cfg(pipelines, args)
        opts = CaptionOptions(dataset=path, captions=cfg, pipelines=pipelines, address=address,
                              workers=workers, progress=progress)  # fmt: skip
        summary = run_caption(opts)
    except (ValueError, FileNotFoundError, ValidationError) as e:
        typer.echo(f"ingest caption: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{path}: {summary.captioned} of {summary.episodes} episodes captioned by {summary.captioner} "
        f"({summary.reused} from an earlier run, {summary.fallbacks} fell back to the template, "
        f"{len(summary.kept)} kept their caption); {summary.files_changed} files changed"
    )
    for sid in summary.kept[:10]:
        typer.echo(f"kept (not in --captions): {sid}", err=True)
    for err in summary.errors:
        typer.echo(f"video not decoded, template caption kept: {err}", err=True)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME).")],
    sample: Annotated[
        float | None,
        typer.Option(
            help="Decode the videos and latents of only this many episodes (or this fraction, < 1), drawn "
            "at random; meta, Parquet and indices are still checked in full. Default: decode everything."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --sample draw.")] = 0,
) -> None:
    """Check a dataset against the contract; exit 0 only when every check holds."""
    from ingest.validate import validate_dataset

    problems = validate_dataset(path, sample=sample, seed=seed)
    for p in problems:
        typer.echo(f"{p.file}: {p.field}: {p.message}", err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(1)
    drawn = (
        ""
        if sample is None
        else f" (videos and latents of a sample decoded: --sample {sample:g} --seed {seed})"
    )
    typer.echo(f"{path}: valid{drawn}")


@app.command()
def label(
    path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME) written by `ingest run`.")],
    overrides: Annotated[
        Path | None, typer.Option(help="CSV `source_episode_id,tier,reason`: these tiers win (recorded).")
    ] = None,
    reset_overrides: Annotated[bool, typer.Option(help="Forget overrides of earlier runs.")] = False,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read (section `tiers`).")] = None,
) -> None:
    """Decide every episode's quality tier again from its metrics (docs/TIERS.md). A published episode is
    not re-encoded: idle spans tier it `low`, only `ingest run` can cut them."""
    from ingest.job import DEFAULT_PIPELINES
    from ingest.label import LabelOptions
    from ingest.label import label as label_dataset

    pipelines = pipelines or DEFAULT_PIPELINES
    opts = LabelOptions(path=path, pipelines=pipelines, overrides=overrides, reset_overrides=reset_overrides)
    try:
        summary = label_dataset(opts)
    except (ValueError, KeyError, FileNotFoundError) as e:
        typer.echo(f"ingest label: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: {summary.changed} episodes changed; {summary.counts.line()}")


def _hands(path: Path, pipelines: Path, estimator: str, workers: int | None, address: str | None) -> None:
    from ingest.hands.job import HandsOptions, run_hands

    opts = HandsOptions(path=path, pipelines=pipelines, estimator=estimator, workers=workers, address=address)
    try:
        summary = run_hands(opts)
    except (ValueError, KeyError, FileNotFoundError) as e:
        typer.echo(f"ingest hands: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: {summary.upgraded} episodes upgraded, {summary.skipped} already had hands, "
               f"{summary.failed} failed")  # fmt: skip
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def hands(
    path: Annotated[Path, typer.Argument(help="An action-free video dataset folder (ROOT/NAME).")],
    estimator: Annotated[str, typer.Option(help="Hand estimator backend (docs/HANDS.md).")] = "mediapipe",
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml (the section's `hands:`).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Estimator processes (Ray actors); 1: in this process.", min=1)
    ] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster (HOST:PORT).")] = None,
) -> None:
    """Estimate MANO-21 hands from each action-free episode's video and rewrite it in place with state, action
    and masks (`hands_source: estimated`, tier `low` by default); resumable, a second run changes nothing."""
    from ingest.job import DEFAULT_PIPELINES

    _hands(path, pipelines or DEFAULT_PIPELINES, estimator, workers, address)


@app.command()
def sources(
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read.")] = None,
) -> None:
    """List the sources `ingest run` knows: each pipelines.yaml section and its reader."""
    from ingest.job import DEFAULT_PIPELINES
    from schemas.pipelines import PipelinesFile

    for name, cfg in PipelinesFile.load(pipelines or DEFAULT_PIPELINES).sources.items():
        typer.echo(f"{name}\t{cfg.format}\t{cfg.embodiment_kind}\t{cfg.embodiment}")


app.command("report")(report_command)
app.command("view")(view_command)

entry = main_of(app, "ingest")  # one-line errors and the exit codes of schemas/errors.py

if __name__ == "__main__":
    entry()
