"""The step contract of `ingest run`: a stage is a name and a function over one converted episode.

`Stage.apply(ep, cfg, counts)` gets a `CanonicalEpisode` a source built, the section's config and a
`Counter` to add what it did to (episodes cut, tiered, captioned, ...); it returns the episode, changed
or not, or None to drop it (counted as `dropped`; the episode is not written). The job runs the chain
(`ingest/stages/chain.py`: the default order, or a section's `stages:` in pipelines.yaml) in the worker,
between the source's `convert` and the writer's staging, through `run_chain`, which times every call.

`StageLog` collects, per stage, the episodes it saw, its counters and its wall time; the job also tracks
its two fixed ends with it (`convert`: the source reader, `write`: encoding and staging). The workers'
logs are summed on the driver (`merge`) into the run's report: `ingest run` prints it and writes it to
`.work/stages.json`. It is a report of one run, never part of the dataset: a resumed run counts only
what it converted itself, and times differ between runs, while `meta/` must re-run to the same bytes
(what the quality stage decided is in `meta/` anyway, per episode).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from schemas.episode import CanonicalEpisode
from schemas.source_config import SourceConfig

StageFn = Callable[[CanonicalEpisode, SourceConfig, Counter[str]], CanonicalEpisode | None]


@dataclass(frozen=True)
class Stage:
    """One step of the chain: `name` (as in pipelines.yaml `stages:`) and the function it runs."""

    name: str
    apply: StageFn


class StageReport(BaseModel):
    """What one stage did in a run: episodes in, its counters (summed over episodes) and its wall time."""

    model_config = ConfigDict(extra="forbid")
    name: str
    seen: int = 0  # episodes in (source items for `convert`)
    seconds: float = 0.0
    counters: dict[str, int] = {}  # by name; zero counts are left out

    def line(self) -> str:
        counts = "".join(f", {k} {v}" for k, v in self.counters.items())
        return f"{self.name}: {self.seen} in{counts} ({self.seconds:.2f} s)"


class StageLog:
    """Per-stage reports of one worker call or of a whole run, in the order stages first report."""

    def __init__(self) -> None:
        self.reports: dict[str, StageReport] = {}

    @contextmanager
    def track(self, name: str, seen: int = 1) -> Iterator[Counter[str]]:
        """Time the block and add it, the `seen` episodes and what the block counts to stage `name`."""
        counts: Counter[str] = Counter()
        start = time.perf_counter()
        try:
            yield counts
        finally:
            seconds = time.perf_counter() - start
            self.merge([StageReport(name=name, seen=seen, seconds=seconds, counters=dict(counts))])

    def merge(self, reports: Iterable[StageReport]) -> None:
        for r in reports:
            into = self.reports.setdefault(r.name, StageReport(name=r.name))
            into.seen += r.seen
            into.seconds += r.seconds
            summed = Counter(into.counters) + Counter(r.counters)
            into.counters = dict(sorted(summed.items()))

    def ordered(self, names: Iterable[str]) -> list[StageReport]:
        """The reports in the order of `names` (a stage that saw nothing reports zeros), then any other."""
        names = list(names)
        rest = [n for n in self.reports if n not in names]
        return [self.reports.get(n, StageReport(name=n)) for n in [*names, *rest]]


def run_chain(
    ep: CanonicalEpisode, chain: Iterable[Stage], cfg: SourceConfig, log: StageLog
) -> CanonicalEpisode | None:
    """The episode through every stage in order; None when a stage drops it."""
    for stage in chain:
        with log.track(stage.name) as counts:
            out = stage.apply(ep, cfg, counts)
            if out is None:
                counts["dropped"] += 1
        if out is None:
            return None
        ep = out
    return ep
