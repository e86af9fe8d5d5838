"""Ray set-up and the progress bar, shared by the ingest and latents jobs."""

from __future__ import annotations

import logging
import os
import warnings

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from schemas.errors import Refused


def init_ray(address: str | None, workers: int | None) -> tuple[bool, int]:
    """Start an embedded Ray (default) or join the cluster at `address`.

    Returns whether we started it (and so must shut it down) and how many CPU tasks run at once:
    `workers`, or else the CPUs Ray sees (this machine's, or the whole cluster's)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    import ray

    started = not ray.is_initialized()
    if started and address:
        join_cluster(address)
    elif started:
        ray.init(
            address="local",  # a new embedded instance, never a `ray start` cluster found on this machine
            # GPUs are detected (latents and VLM captions get one per actor); ingest tasks ask for none
            logging_level=logging.WARNING,
            num_cpus=workers or os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=512 * 1024**2,
            log_to_driver=False,
        )
    return started, workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def join_cluster(address: str) -> None:
    """`ray.init(address=...)`, refused in one line (exit 2) when the cluster cannot be joined."""
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise Refused(
            f"cannot join the Ray cluster at {address} ({e})",
            "check the address, and that RAY_AUTH_MODE=token and RAY_AUTH_TOKEN are the cluster's "
            "(Ray's token authentication; README, 'A Ray cluster')",
        ) from None


def shutdown_ray(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


def quiet_data_context(preserve_order: bool = True) -> None:
    """Ray Data in order, without its own progress bars (ours is the rich one)."""
    import ray

    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = preserve_order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rejects]} rejected"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
