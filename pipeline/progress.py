"""How long a long stage will take, said before most of it runs.

A stage logs its planned steps, then feeds a `WarmupEstimate` after every step: once a few
steps are measured it logs the time per step and how long the rest will take. The measured
steps are the stage's own first steps, not extra work, so an estimate changes no result.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """A rough human duration: '40 s', '12 min', '5.9 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class WarmupEstimate:
    """Times the first steps of a stage (at least `warmup` of them and `seconds`) and then
    logs the estimate, once.

    The first step is left out: it pays one-off costs (allocations, lazy initialization).
    `done` counts steps finished before this process started (a resumed run). When steps
    differ in size (batches grouped by length: the longest comes first), each step reports
    its `work` (e.g. tokens) and `mean_work` is the run's average per step: the estimate is
    then time per unit of work, not per step, so a few short or long batches do not skew it.
    """

    def __init__(
        self,
        stage: str,
        planned: int,
        done: int = 0,
        warmup: int = 5,
        seconds: float = 10.0,
        mean_work: float = 1.0,
    ) -> None:
        self.stage = stage
        self.planned = planned
        self.done = done
        self.warmup = warmup
        self.seconds = seconds
        self.mean_work = mean_work
        self.seen = 0
        self.work = 0.0
        self.started = 0.0
        self.seconds_per_step: float | None = None

    def step(self, work: float = 1.0) -> None:
        """Call after each step, with the work it did."""
        self.seen += 1
        if self.seen == 1:
            self.started = time.perf_counter()
            return
        self.work += work
        elapsed = time.perf_counter() - self.started
        if self.seconds_per_step is None and self.seen > self.warmup and elapsed >= self.seconds:
            self.seconds_per_step = elapsed / max(self.work, 1e-9) * self.mean_work
            self._report(self.seconds_per_step)

    def _report(self, per_step: float) -> None:
        left = max(0, self.planned - self.done - self.seen)
        total = per_step * (self.planned - self.done)
        finish = datetime.now() + timedelta(seconds=per_step * left)
        log.info(
            "%s: %.3g s a step, from %d measured steps: about %s for the %d steps left "
            "(%s for all %d of this run; done around %s)",
            self.stage,
            per_step,
            self.seen - 1,
            duration(per_step * left),
            left,
            duration(total),
            self.planned - self.done,
            finish.strftime("%H:%M"),
        )
