"""A stage's own log lines and progress bars in the Prefect run log.

The flows run each stage in a child process (`dvc repro`, which runs `python -m pipeline
<stage>`), whose stdout and stderr arrive on one pipe. `forward` reads that pipe until the child
closes it and logs to the task run's logger

- every line: the pipeline's own records (`2026-12-06 07:50:01,234 INFO pipeline.training.train:
  train: resuming from checkpoint-40`) as their message at their level, DVC's lines (`Running
  stage 'train':`, `> python -m pipeline train`) as they are, minus its hints about git and
  `dvc push`; terminal control sequences (tqdm's cursor moves for nested bars) left out;
- the tqdm progress bars, one line per bar every `every_s` seconds and at 100%
  (`pretrain tiny-qwen: 39% 79/204 [00:27<00:35, 3.54step/s, loss=5.536]`); the terminal
  still gets the bars themselves.

`watch`, when given, sees every line (not the bars) as it arrives: the flows read DVC's decision
for the stage from it.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

# tqdm's status line: "desc: 39%|███▊      | 79/204 [00:27<00:35,  3.54step/s, loss=5.536]"
BAR = re.compile(
    r"^\s*(?P<desc>.*?)(?::\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*"
    r"(?P<rest>(?P<n>\d+)/(?P<total>\d+).*?)\s*$"
)
# The format `python -m pipeline` logs with (pipeline/__main__.py).
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<name>[\w.]+): (?P<message>.*)$"
)
# Terminal control sequences: tqdm moves the cursor ("\x1b[A") to redraw a nested bar, after
# spaces that blank the line; the run log gets the text without them.
ANSI = re.compile(r"\s*\x1b\[[0-9;?]*[A-Za-z]")
# What DVC prints for a person at a terminal after each stage: not news in a run log.
DVC_HINTS = re.compile(
    r"^(To track the changes with git, run:|To enable auto staging, run:|\s+git add .*"
    r"|\s+dvc config core\.autostage true|Use `dvc push` to send your updates to remote storage\."
    r"|Data and pipelines are up to date\.)$"
)


class ProgressLines:
    """Turns tqdm's status lines into log lines, throttled per bar description."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last: dict[str, tuple[float, bool]] = {}  # desc -> (time, finished) of last line

    def line(self, piece: str) -> str | None:
        """The log line for a status line that is due; None when it is not a bar or not due."""
        match = BAR.match(piece)
        if not match:
            return None
        desc, done = match["desc"].strip(), match["n"] == match["total"]
        now = time.monotonic()
        last_time, last_done = self._last.get(desc, (float("-inf"), False))
        if not (done and not last_done) and now - last_time < self.every_s:
            return ""
        self._last[desc] = (now, done)
        return f"{desc + ': ' if desc else 'progress: '}{match['pct']}% {match['rest']}"


def _log_line(logger: Any, line: str) -> None:
    record = RECORD.match(line)
    if record:
        logger.log(logging.getLevelName(record["level"]), "%s", record["message"])
    elif line.startswith(("error: ", "ERROR: ")):  # the CLI's one-line error, DVC's
        logger.error("%s", line)
    elif line.startswith("WARNING: "):  # DVC's
        logger.warning("%s", line)
    elif line.strip() and not DVC_HINTS.match(line):
        logger.info("%s", line)


def forward(
    fd: int,
    logger: Any,
    every_s: float = 10.0,
    watch: Callable[[str], None] | None = None,
    terminal: Any = None,
) -> None:
    """Log what the child writes to the pipe `fd` until it closes it (see the module doc)."""
    terminal = terminal or sys.stderr
    bars = ProgressLines(every_s)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        chunk = os.read(fd, 65536)
        pending += decoder.decode(chunk, final=not chunk)
        # tqdm redraws with "\r"; a piece is complete once the next separator arrived
        *pieces, pending = re.split(r"(?<=[\r\n])", pending)
        if not chunk and pending:
            pieces, pending = [*pieces, pending], ""
        for piece in pieces:
            text = piece.rstrip("\r\n")
            plain = ANSI.sub("", text) if "\x1b" in text else text
            progress = bars.line(plain)
            if progress is None:
                _log_line(logger, plain)
                if watch:
                    watch(plain)
                continue
            terminal.write("\r" + text + ("\n" if piece.endswith("\n") else ""))
            terminal.flush()
            if progress:
                logger.info("%s", progress)
        if not chunk:
            return
