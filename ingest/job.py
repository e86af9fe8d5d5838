"""The Ray Data ingest job: discover -> convert (parallel, in workers) -> publish (driver) -> finalise.

Resumable in datatrove's spirit, with the Parquet file as the completion marker:
- a worker converts one source episode into `ROOT/NAME/.work/staged/<id>/` (atomic directory rename);
- the driver publishes staged episodes strictly in discovery order (Ray Data keeps order), giving each
  its `episode_index`, global `index` and `task_index`; the Parquet is written last, by rename;
- the meta files are rebuilt from what is published.
A killed run leaves published episodes (a prefix of the discovery order), maybe some staged ones, and
no half-written file; the re-run skips what is published and reuses what is staged, so it ends with the
same dataset as an uninterrupted run.
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest import writer
from ingest.cluster import init_ray, progress, quiet_data_context, shutdown_ray
from ingest.errors import EpisodeError
from ingest.label import TierCounts, tier_counts
from ingest.sources import get_source
from ingest.sources.base import PartReject, SourceEpisodeRef
from ingest.sources.rlds import RldsError
from ingest.stages.base import StageLog, StageReport, run_chain
from ingest.stages.chain import chain
from ingest.workdir import WORK_DIR, clear_reject, dataset_lock, load_rejects, safe_id, save_reject
from schemas.atomic import write_text_atomic
from schemas.episode import CanonicalEpisode
from schemas.errors import Failed, Refused
from schemas.lerobot import CARD_PATH
from schemas.pipelines import PipelinesFile, SourceConfig
from schemas.reject import RejectRecord

DEFAULT_PIPELINES = Path(__file__).resolve().parents[1] / "pipelines.yaml"
EPISODES_PER_TASK = 4
PARTS_FILE = "parts.json"
PART_REJECTS_FILE = "part_rejects.json"
ORIGIN_FILE = "origin.json"
STAGES_FILE = "stages.json"  # the last run's stage report, in .work/
CONVERT, WRITE = "convert", "write"  # the fixed ends of the chain, reported like stages
# Exceptions that mean a bug in the converter or a broken install, never bad input: they stop the run
# (the item is not recorded as a reject, so the re-run after the fix converts it).
BUG_ERRORS: tuple[type[BaseException], ...] = (
    TypeError, AttributeError, NameError, ImportError, AssertionError, NotImplementedError, RecursionError,
    SyntaxError,
)  # fmt: skip


def check_name(name: str) -> str:
    """A dataset name is one plain path component: no separator, not `.` or `..`, not absolute."""
    bad = not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
    if bad or Path(name).is_absolute() or name.startswith("~"):
        raise ValueError(f"dataset name {name!r} must be one folder name (no '/', '.', '..' or '~')")
    return name


class RunOptions(BaseModel):
    """What `ingest run` accepts, validated before anything starts."""

    model_config = ConfigDict(extra="forbid")
    source: str
    input: Path
    output: Path
    name: str | None = None
    address: str | None = None
    workers: int | None = Field(None, gt=0, description="default: this machine's CPUs, or the cluster's")
    limit: int | None = Field(None, gt=0)
    max_reject_ratio: float = Field(0.05, ge=0, le=1)
    pipelines: Path = DEFAULT_PIPELINES
    progress: bool = True
    duplicates: Literal["skip", "keep"] = Field(
        "skip", description="an episode with the content of a published one: recorded, not published (skip)"
    )
    mano_dir: Path | None = Field(None, description="the MANO model folder, over the section's (hot3d)")

    @field_validator("name")
    @classmethod
    def _one_component(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v)

    @property
    def dataset_root(self) -> Path:
        return self.output / check_name(self.name or self.source)


class RunSummary(BaseModel):
    dataset_root: Path
    discovered: int  # source items (files, shards, episodes of the source)
    skipped_published: int  # source items already published
    published: int  # dataset episodes published by this run
    rejected: int  # source items, or parts of them (records of a shard), rejected by this run
    duplicates: int = 0  # episodes not published: the same content as a published one
    left_out: list[str] = []  # annotated segments discovery left out: their videos are not under --input
    total_episodes: int
    total_frames: int
    tiers: TierCounts  # the whole dataset's tiers and what the interaction filter cut
    stages: list[StageReport] = []  # this run: convert, each stage of the chain, write (counters, seconds)

    @property
    def reject_ratio(self) -> float:
        """Rejected over published + rejected: the share of this run's source episodes not converted."""
        attempted = self.published + self.rejected
        return self.rejected / attempted if attempted else 0.0


class ConvertResult(BaseModel):
    """One row coming back from a worker: staged directories (and the rejected parts of the item, keyed
    by the part's source episode id), or a reject of the whole item."""

    source_episode_id: str
    staged: list[str] = []
    part_rejects: dict[str, RejectRecord] = {}
    reject: RejectRecord | None = None
    bug: str | None = None  # a programming error or a missing dependency: the driver stops the run
    stages: list[StageReport] = []  # what converting it took, per stage (none when staged before)


# ----------------------------------------------------------------------------- worker side


def _staged_parts(staging: Path) -> list[Path] | None:
    """The parts of a completely staged source episode, or None when it must be (re)converted."""
    try:
        parts = [staging / p for p in json.loads((staging / PARTS_FILE).read_text())]
    except (OSError, ValueError):
        return None
    # A cut recording whose run died between two parts has lost the published parts' folders: it is
    # converted again, and the Publisher skips the parts already published.
    return parts if all(writer.is_staged(p) for p in parts) else None


def _staged_part_rejects(staging: Path) -> dict[str, RejectRecord]:
    path = staging / PART_REJECTS_FILE
    rows = json.loads(path.read_text()) if path.is_file() else {}
    return {k: RejectRecord.model_validate(v) for k, v in rows.items()}


def _mark_staged(staging: Path, parts: list[Path], part_rejects: dict[str, RejectRecord]) -> None:
    """Write the part rejects, then the parts list: the marker that staging is complete."""
    staging.mkdir(parents=True, exist_ok=True)
    rejects = {k: r.model_dump() for k, r in part_rejects.items()}
    (staging / PART_REJECTS_FILE).write_text(json.dumps(rejects))
    write_text_atomic(staging / PARTS_FILE, json.dumps([p.name for p in parts]))


def convert_one(ref: SourceEpisodeRef, cfg: SourceConfig, work: Path) -> ConvertResult:
    """Convert and stage one source episode; bad input becomes a reject, never an exception."""
    staging = work / "staged" / safe_id(ref.source_episode_id)
    parts = _staged_parts(staging)
    if parts is not None:
        return _staged_result(ref, parts, _staged_part_rejects(staging))
    shutil.rmtree(staging, ignore_errors=True)
    log = StageLog()
    try:
        parts, part_rejects = _convert_and_stage(ref, cfg, staging, log)
    except BUG_ERRORS as exc:  # not the data's fault: stop the run, record no reject
        shutil.rmtree(staging, ignore_errors=True)
        path = next(iter(ref.files.values()), ref.source_episode_id)
        bug = f"{path}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        return ConvertResult(source_episode_id=ref.source_episode_id, bug=bug)
    except Exception as exc:  # noqa: BLE001 - any other failure of one episode is a reject, the run goes on
        shutil.rmtree(staging, ignore_errors=True)
        reports = list(log.reports.values())
        return ConvertResult(
            source_episode_id=ref.source_episode_id, reject=_reject(ref, exc), stages=reports
        )
    return _staged_result(ref, parts, part_rejects, log)


def _convert_and_stage(
    ref: SourceEpisodeRef, cfg: SourceConfig, staging: Path, log: StageLog
) -> tuple[list[Path], dict[str, RejectRecord]]:
    """The source's episodes through the section's stages into staging; the parts and part rejects."""
    with log.track(CONVERT) as counts:
        items = get_source(cfg.format).convert(ref, cfg)
        rejected = [x for x in items if isinstance(x, PartReject)]
        counts.update(episodes=len(items) - len(rejected), rejected_parts=len(rejected))
    stages = chain(cfg)
    built = [x for x in items if isinstance(x, CanonicalEpisode)]
    episodes = [ep for ep in (run_chain(x, stages, cfg, log) for x in built) if ep is not None]
    part_rejects = {x.source_episode_id: _reject(ref, x.error) for x in rejected}
    parts = [staging / f"part-{i:03d}" for i in range(len(episodes))]
    for ep, part in zip(episodes, parts, strict=True):
        with log.track(WRITE) as counts:
            writer.stage_episode(ep, part, cfg.video)
            counts["frames"] += ep.length
    _mark_staged(staging, parts, part_rejects)
    return parts, part_rejects


def _staged_result(
    ref: SourceEpisodeRef,
    parts: list[Path],
    part_rejects: dict[str, RejectRecord],
    log: StageLog | None = None,
) -> ConvertResult:
    staged = [str(p) for p in parts]
    reports = list(log.reports.values()) if log is not None else []
    return ConvertResult(
        source_episode_id=ref.source_episode_id, staged=staged, part_rejects=part_rejects, stages=reports
    )


def _reject(ref: SourceEpisodeRef, exc: Exception) -> RejectRecord:
    if isinstance(exc, EpisodeError):
        return RejectRecord(source_path=exc.path, stage=exc.stage, error=str(exc))
    path = next(iter(ref.files.values()), ref.source_episode_id)
    return RejectRecord(source_path=path, stage="convert", error=f"{path}: {type(exc).__name__}: {exc}")


def _convert_row(row: dict[str, Any], source_name: str, cfg_json: str, work: str) -> dict[str, Any]:
    """Ray Data `map` function: one row in (a source episode), one row out (its ConvertResult)."""
    ref = SourceEpisodeRef.model_validate_json(row["ref"])
    cfg = PipelinesFile.model_validate({"sources": {source_name: json.loads(cfg_json)}}).source(source_name)
    # Each task reserves one CPU: its codecs get one thread unless pipelines.yaml says otherwise, so that
    # N workers use N cores without oversubscribing them.
    cfg.video.threads = cfg.video.threads or 1
    return {"result": convert_one(ref, cfg, Path(work)).model_dump_json()}


# ----------------------------------------------------------------------------- driver side


class Publisher:
    """Publishes staged episodes in order; keeps the running episode/frame/task counters."""

    def __init__(self, root: Path, skip_duplicates: bool = True) -> None:
        self.root, self.skip_duplicates, self.duplicates = root, skip_duplicates, 0
        published = writer.read_published(root)
        self.tasks = writer.task_table(published)
        self.next_episode = len(published)
        self.next_index = sum(p.record.length for p in published)
        self.published = {p.record.source_episode_id for p in published}
        self.contents = {p.content_sha256: p.record.source_episode_id for p in published if p.content_sha256}

    def is_done(self, ref: SourceEpisodeRef, work: Path) -> bool:
        """Published, and not a cut recording whose later parts were still waiting when a run died."""
        started = any(base_id(i) == ref.source_episode_id for i in self.published)
        return started and not (work / "staged" / safe_id(ref.source_episode_id)).exists()

    def publish_all(self, staged: list[str]) -> int:
        """Publish every part of one source episode, then drop its staging folder; returns how many
        parts this call published (a part published before a run died is not counted again)."""
        count = sum(self.publish(Path(part)) for part in staged)
        if staged:
            shutil.rmtree(Path(staged[0]).parent, ignore_errors=True)
        return count

    def publish(self, staged: Path) -> bool:
        episode = writer.read_staged(staged)
        meta = episode.meta
        if meta.source_episode_id in self.published:  # a part published before the run died
            return False
        twin = self.contents.get(episode.content_sha256) if episode.content_sha256 else None
        if twin is not None and self.skip_duplicates:
            error = f"{meta.source_episode_id}: same content as the published {twin} (not published twice)"
            record = RejectRecord(source_path=meta.source_episode_id, stage="duplicate", error=error)
            save_reject(self.root, record, f"duplicate:{meta.source_episode_id}")
            self.duplicates += 1
            return False
        pub = writer.publish_episode(staged, self.root, self.next_episode, self.next_index, self.tasks)
        self.published.add(meta.source_episode_id)
        if pub.content_sha256:
            self.contents.setdefault(pub.content_sha256, meta.source_episode_id)
        clear_reject(self.root, f"duplicate:{meta.source_episode_id}")
        self.next_episode += 1
        self.next_index += pub.record.length
        return True


def base_id(source_episode_id: str) -> str:
    """The source episode id without the `#<part>` suffix a cut recording gets."""
    return source_episode_id.split("#", 1)[0]


def _num_blocks(n_items: int, workers: int) -> int:
    """A few episodes per Ray task (its scheduling cost is ~0.2 s), at least two tasks per worker."""
    return min(n_items, max(2 * workers, math.ceil(n_items / EPISODES_PER_TASK)))


def _convert_stream(
    refs: list[SourceEpisodeRef], opts: RunOptions, cfg: SourceConfig, work: Path, workers: int
) -> Iterator[ConvertResult]:
    """Run the conversions on Ray Data, streaming results back in discovery order."""
    import ray

    quiet_data_context()
    items = [{"ref": r.model_dump_json()} for r in refs]
    ds = ray.data.from_items(items, override_num_blocks=_num_blocks(len(items), workers))
    ds = ds.map(
        _convert_row,
        fn_kwargs={"source_name": opts.source, "cfg_json": cfg.model_dump_json(), "work": str(work)},
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=workers),
    )
    for row in ds.iter_rows():
        yield ConvertResult.model_validate_json(row["result"])


def _convert_and_publish(
    todo: list[SourceEpisodeRef], opts: RunOptions, cfg: SourceConfig, publisher: Publisher, log: StageLog
) -> tuple[int, int]:
    """Stream conversions from Ray and publish them in order.

    Returns (episodes published, rejects): one source item (an EgoDex file pair, an RLDS shard) may give
    several episodes, and a reject is a whole item or one rejected part of it (a record of a shard). Part
    rejects are saved before the item's episodes are published, so that a kill cannot lose them. Each
    item's stage reports are added to `log`."""
    root, n_published, n_rejected = publisher.root, 0, 0
    started, workers = init_ray(opts.address, opts.workers)
    try:
        with progress(opts.progress) as bar:
            task = bar.add_task(f"ingest {opts.source}", total=len(todo), rejects=0)
            for result in _convert_stream(todo, opts, cfg, root / WORK_DIR, workers):
                if result.bug is not None:
                    raise Failed(
                        f"converting stopped, a bug or a broken install, not bad data: {result.bug} "
                        f"({n_published} episodes published before it)",
                        "fix the converter or install what is missing, then run the same command again; "
                        "it resumes",
                    )
                log.merge(result.stages)
                if result.reject is not None:
                    save_reject(root, result.reject, result.source_episode_id)
                    n_rejected += 1
                else:
                    for key, reject in result.part_rejects.items():
                        save_reject(root, reject, key)
                    n_published += publisher.publish_all(result.staged)
                    clear_reject(root, result.source_episode_id)
                    n_rejected += len(result.part_rejects)
                bar.update(task, advance=1, rejects=n_rejected)
    finally:
        shutdown_ray(started)
    return n_published, n_rejected


class SectionError(Refused):
    """No single pipelines.yaml section fits `ingest run <format>` for this input."""


class DiscoveryError(Refused):
    """Discovery refused --input (not the source's layout, a mapping that does not fit it) or found no
    source episode there: the run stops before writing anything, naming what the source expects."""


def pick_section(pipes: PipelinesFile, source: str, root: Path) -> str:
    """`source` when pipelines.yaml has that section; for a format name without one (`ingest run lerobot`),
    the one section of that format whose mapping fits the input (its `discover` accepts it)."""
    if source in pipes.sources:
        return source
    candidates = [n for n, c in pipes.sources.items() if c.format == source]
    if not candidates:
        raise SectionError(
            f"no source {source!r} in pipelines.yaml",
            f"pick one of {sorted(pipes.sources)} (`ingest sources`)",
        )
    fits, why = [], []
    for name in candidates:
        try:
            get_source(source).discover(root, pipes.sources[name])
            fits.append(name)
        except (EpisodeError, ValueError, KeyError) as e:
            why.append(f"{name}: {e}")
    if len(fits) != 1:
        detail = f"several fit: {fits}" if fits else "none fits (" + "; ".join(why) + ")"
        raise SectionError(f"pick the pipelines.yaml section for {root}; {detail}")
    return fits[0]


def check_requires(source: Any, section: str) -> None:
    """Import, on the driver and before Ray starts, what the section's converter imports lazily."""
    for module in getattr(source, "requires", ()):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise Refused(
                f"section {section} needs the Python module {module!r}, which does not import ({e})",
                "install the project's dependencies (`make setup`, or `pip install -e .`)",
            ) from None


class Origin(BaseModel):
    """What a dataset folder was written from (`.work/origin.json`): a run from anything else is refused."""

    section: str
    input: str


def check_origin(root: Path, origin: Origin) -> None:
    """Refuse to write into a folder that holds a dataset of another section or input."""
    path, card = root / WORK_DIR / ORIGIN_FILE, root / CARD_PATH
    if path.is_file():
        held = Origin.model_validate_json(path.read_text())
    elif card.is_file():  # a dataset moved without its work folder: only its section is known
        held = Origin(section=str(json.loads(card.read_text()).get("source")), input=origin.input)
    else:
        return
    if held != origin:
        raise Refused(
            f"{root} holds the dataset of section {held.section} from {held.input}; this run is section "
            f"{origin.section} from {origin.input}",
            "give this one its own --name",
        )


def _write_origin(root: Path, origin: Origin) -> None:
    path = root / WORK_DIR / ORIGIN_FILE
    if not path.is_file():
        write_text_atomic(path, origin.model_dump_json())


def with_mano_dir(cfg: SourceConfig, mano_dir: Path | None) -> SourceConfig:
    """The section with `mano_dir` (resolved) in place of its own; a section that reads no MANO (no
    `mano_dir` field) is returned as it is."""
    if mano_dir is None or "mano_dir" not in type(cfg).model_fields:
        return cfg
    return cfg.model_copy(update={"mano_dir": Path(mano_dir).expanduser().resolve()})


def _discover(opts: RunOptions, cfg: SourceConfig, source: Any) -> tuple[list[SourceEpisodeRef], list[str]]:
    """The source items under --input (the first --limit) and the annotated segments left out."""
    try:
        refs = source.discover(opts.input, cfg)[: opts.limit]
        left_out = source.skipped(opts.input, cfg) if hasattr(source, "skipped") else []
    except (EpisodeError, RldsError) as e:
        raise DiscoveryError(f"{e} ({cfg.format} expects {source.layout})") from e
    if not refs:
        why = f" ({len(left_out)} annotated segments, none of whose videos is there)" if left_out else ""
        raise DiscoveryError(
            f"{opts.input}: no {cfg.format} episode found{why}", f"it expects {source.layout}"
        )
    return refs, left_out


def _write_stage_report(root: Path, reports: list[StageReport]) -> None:
    """`.work/stages.json`: the last run's stage report (not in meta/: times and a resumed run's counts
    differ from run to run, the dataset must not)."""
    path = root / WORK_DIR / STAGES_FILE
    write_text_atomic(path, json.dumps([r.model_dump() for r in reports], indent=1) + "\n")


def run(opts: RunOptions) -> RunSummary:
    """`ingest run`: convert every source episode under `opts.input` into `opts.dataset_root`."""
    if not opts.input.exists():
        raise Refused(f"--input {opts.input} does not exist", "check the path")
    pipes = PipelinesFile.load(opts.pipelines)
    section = pick_section(pipes, opts.source, opts.input)
    # `ingest run lerobot`: the dataset is named after the section picked (never a shared `lerobot`)
    opts = opts.model_copy(update={"source": section})
    cfg = with_mano_dir(pipes.source(opts.source), opts.mano_dir)
    source = get_source(cfg.format)
    check_requires(source, section)
    origin = Origin(section=section, input=str(opts.input.resolve()))
    check_origin(opts.dataset_root, origin)
    refs, left_out = _discover(opts, cfg, source)
    root, log = opts.dataset_root, StageLog()
    with dataset_lock(root):
        _write_origin(root, origin)
        publisher = Publisher(root, skip_duplicates=opts.duplicates == "skip")
        todo = [r for r in refs if not publisher.is_done(r, root / WORK_DIR)]
        try:
            published, rejected = _convert_and_publish(todo, opts, cfg, publisher, log) if todo else (0, 0)
        except Failed:  # a bug stopped the run: what it published is still a valid dataset
            writer.finalize_meta(root, opts.source, cfg, load_rejects(root))
            raise
        info = writer.finalize_meta(root, opts.source, cfg, load_rejects(root))
        reports = log.ordered([CONVERT, *cfg.stage_names, WRITE])
        _write_stage_report(root, reports)
    return RunSummary(
        dataset_root=root,
        discovered=len(refs),
        skipped_published=len(refs) - len(todo),
        published=published,
        rejected=rejected,
        duplicates=publisher.duplicates,
        left_out=left_out,
        total_episodes=info.total_episodes,
        total_frames=info.total_frames,
        tiers=tier_counts(root),
        stages=reports,
    )
