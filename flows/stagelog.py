"""A stage's own log lines and progress bars in the Prefect run log.

The stage code (pipeline/) logs through `logging.getLogger("pipeline.<stage>")` and draws tqdm
bars on stderr (pretraining, training, generation), neither of which Prefect records. While a
stage runs, `stage_logs` forwards

- every record of the `pipeline` loggers (INFO and up) to the task run's logger, and
- the progress bars written to stderr, one line per bar every `every_s` seconds and at 100%
  (`pretrain tiny-qwen: 39% 79/204 [00:27<00:35, 3.54step/s, loss=5.536]`); the terminal
  still gets the bars themselves.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

# tqdm's status line: "desc: 39%|███▊      | 79/204 [00:27<00:35,  3.54step/s, loss=5.536]"
BAR = re.compile(
    r"^\s*(?P<desc>.*?)(?::\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*"
    r"(?P<rest>(?P<n>\d+)/(?P<total>\d+).*?)\s*$"
)


class _Forward(logging.Handler):
    def __init__(self, logger: Any):
        super().__init__(logging.INFO)
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        self.logger.log(record.levelno, "%s", record.getMessage(), exc_info=record.exc_info)


class ProgressTee:
    """A stand-in for sys.stderr: writes through, and logs tqdm status lines, throttled per bar
    description. tqdm writes each update as one `write("\\r" + line)` call."""

    def __init__(self, stream: Any, logger: Any, every_s: float):
        self.stream, self.logger, self.every_s = stream, logger, every_s
        self._last: dict[str, tuple[float, bool]] = {}  # desc -> (time, finished) of the last line
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        lines = []
        with self._lock:
            for piece in re.split(r"[\r\n]", text):
                line = self._progress_line(piece)
                if line:
                    lines.append(line)
        for line in lines:  # outside the lock: the logger may write to stderr (this object)
            self.logger.info("%s", line)
        return written

    def _progress_line(self, piece: str) -> str | None:
        match = BAR.match(piece)
        if not match:
            return None
        desc, done = match["desc"].strip(), match["n"] == match["total"]
        now = time.monotonic()
        last_time, last_done = self._last.get(desc, (float("-inf"), False))
        if not (done and not last_done) and now - last_time < self.every_s:
            return None
        self._last[desc] = (now, done)
        return f"{desc + ': ' if desc else 'progress: '}{match['pct']}% {match['rest']}"

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


@contextlib.contextmanager
def stage_logs(logger: Any, every_s: float = 10.0) -> Iterator[None]:
    """Forward the `pipeline` loggers and stderr progress bars to `logger` while the block runs."""
    package = logging.getLogger("pipeline")
    handler = _Forward(logger)
    saved = package.level, package.propagate
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False  # the run logger prints to the console itself: no second copy
    original = sys.stderr
    sys.stderr = ProgressTee(original, logger, every_s)
    try:
        yield
    finally:
        sys.stderr = original
        package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]
