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
    """Times steps 2 to 1 + `warmup` of a stage and then logs the estimate, once.

    The first step is left out: it pays one-off costs (allocations, lazy initialization).
    `done` counts steps finished before this process started (a resumed run).
    """

    def __init__(self, stage: str, planned: int, done: int = 0, warmup: int = 5) -> None:
        self.stage = stage
        self.planned = planned
        self.done = done
        self.warmup = warmup
        self.seen = 0
        self.started = 0.0
        self.seconds_per_step: float | None = None

    def step(self) -> None:
        """Call after each step."""
        self.seen += 1
        if self.seen == 1:
            self.started = time.perf_counter()
        elif self.seen == 1 + self.warmup:
            self.seconds_per_step = (time.perf_counter() - self.started) / self.warmup
            self._report(self.seconds_per_step)

    def _report(self, per_step: float) -> None:
        left = max(0, self.planned - self.done - self.seen)
        total = per_step * (self.planned - self.done)
        finish = datetime.now() + timedelta(seconds=per_step * left)
        log.info(
            "%s: %.3g s a step over %d measured steps: about %s for the %d steps left "
            "(%s for all %d of this run; done around %s)",
            self.stage,
            per_step,
            self.warmup,
            duration(per_step * left),
            left,
            duration(total),
            self.planned - self.done,
            finish.strftime("%H:%M"),
        )
