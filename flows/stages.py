"""One stage loop for both flows, on DVC's own executor: each stage of `pipeline.STAGES`
(dvc.yaml's order) is a Prefect task that runs `dvc repro --single-item <stage>` (`--force`
too when forced, as `dvc repro --force`), so a flow run and `dvc repro` take the same decisions
by construction, and DVC itself records each stage in dvc.lock and its outputs in .dvc/cache.

The task
- asks DVC what changed (`dvc status <stage>`), for the log line that says why the stage runs;
  a stage DVC reports up to date is skipped there and then (unless forced): `dvc repro` would
  only print "didn't change, skipping", after a second of starting up (measured: 0.7 to 1.3 s
  a stage, eight of them in a nightly run that registers again);
- starts `dvc repro` in a process group of its own and streams its output (DVC's lines, the
  stage's own log lines and progress bars) into the task run's log (flows/stagelog.py);
  SIGTERM or Ctrl-C reaches that group too (flows/shutdown.py);
- takes DVC's decision from what it printed: ran ("Running stage"), up to date ("didn't
  change, skipping", logged as skipped) or restored from DVC's run-cache ("is cached");
- hands on the stage's result: `python -m pipeline <stage>` writes what `run(cfg)` returned,
  or its typed error, to the file PIPELINE_RESULT names (pipeline/results.py); the task raises
  that error again, and `StageRun.result` is the result object.

Outside a DVC project (no dvc.yaml + .dvc/) the task runs `python -m pipeline -p PARAMS <stage>`
instead: every stage runs and nothing is recorded.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import CancelledRun

import pipeline
from flows import shutdown, stagelog
from pipeline import STAGES, results
from pipeline.config import load_config
from pipeline.errors import ConfigError, PipelineError

Hook = Callable[[str], None]  # called with the params path


@dataclass(frozen=True)
class StageRun:
    """What DVC did with one stage. `output` is the stage's result as the stage process wrote
    it (None when it did not run); `result` is that object as the stage's `run` returned it."""

    stage: str
    ran: bool
    reason: str  # why it ran (DVC's changes, "forced", ...), "up to date", "restored ..."
    seconds: float
    output: Any = None

    @property
    def result(self) -> Any:
        """The stage's result dataclass (decoding imports the stage's module: train's, torch)."""
        return None if self.output is None else results.decode(self.stage, self.output)


def is_dvc_project(root: Path) -> bool:
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def stale_reason(root: Path, stage: str) -> str | None:
    """DVC's own account of one stage: None when up to date, else what changed, in one line
    (`changed deps: params.yaml (tiny modified)`), as `dvc status <stage>` prints it."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC resolves targets from the cwd
        entries = repo.status(targets=[stage]).get(stage)
    return _describe(entries) if entries else None


def _describe(entries: list[Any]) -> str:
    parts = []
    for entry in entries:
        if isinstance(entry, str):  # "changed command", "always changed"
            parts.append(entry)
            continue
        for kind, changes in entry.items():
            items = [
                f"{path} ({', '.join(f'{k} {v}' for k, v in what.items())})"
                if isinstance(what, dict)
                else f"{path} {what}"
                for path, what in changes.items()
            ]
            parts.append(f"{kind}: {', '.join(items)}")
    return "; ".join(parts)


def command(name: str, params_path: str, dvc: bool, force: bool) -> list[str]:
    """What the task runs for one stage."""
    if not dvc:
        return [sys.executable, "-m", "pipeline", "-p", str(params_path), name]
    return [sys.executable, "-m", "dvc", "repro", "--single-item", *(["--force"] * force), name]


class _Decision:
    """DVC's decision about one stage, from the lines `dvc repro` printed."""

    def __init__(self, name: str, reason: str, logger: Any):
        self.name, self.reason, self.logger = name, reason, logger
        self.kind: str | None = None  # "ran" | "skipped" | "restored"
        self.tail: collections.deque[str] = collections.deque(maxlen=30)

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        if line == f"Running stage '{self.name}':":
            self.kind = "ran"
            self.logger.info("stage %s: started (%s)", self.name, self.reason)
        elif line == f"Stage '{self.name}' didn't change, skipping":
            self.kind = "skipped"
        elif line.startswith(f"Stage '{self.name}' is cached - skipping run"):
            self.kind = "restored"

    def failure(self, cmd: list[str], code: int) -> str:
        said = [ln for ln in self.tail if ln.startswith("ERROR")] or list(self.tail)[-3:]
        return f"stage {self.name}: `{' '.join(cmd[1:])}` exited with {code}: " + " | ".join(said)


def run_stage(name: str, params_path: str, dvc: bool, force: bool, logger: Any) -> StageRun:
    """Run one stage as DVC decides (see the module doc); raises the stage's typed error."""
    root = load_config(params_path).root
    reason = "forced" if force else stale_reason(root, name) if dvc else ""
    if dvc and reason is None:  # DVC's status: up to date, so `dvc repro` would do nothing
        return StageRun(name, False, "up to date", 0.0)
    decision = _Decision(name, reason or "no DVC project", logger)
    cmd = command(name, params_path, dvc, force)
    if not dvc:
        decision(f"Running stage '{name}':")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"stage-{name}-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = _env(result_file, dvc)
        code = _run_process(cmd, root, env, f"stage {name}", logger, decision)
        output = results.read(result_file, name) if result_file.exists() else None
    if code != 0:
        raise results.StageFailed(decision.failure(cmd, code))
    seconds = round(time.monotonic() - start, 1)
    if decision.kind == "ran" or output is not None:
        return StageRun(name, True, decision.reason, seconds, output)
    if decision.kind == "restored":
        return StageRun(name, False, f"restored from run-cache ({decision.reason})", seconds)
    return StageRun(name, False, "up to date", seconds)


def _env(result_file: Path, dvc: bool) -> dict[str, str]:
    """The stage reports to `result_file`; dvc.yaml's `python` is the flow's interpreter.
    Outside a DVC project the stage runs the flow's own copy of the pipeline code (in one,
    the project's, as `dvc repro` does)."""
    env = results.output_env(result_file)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if not dvc:
        code = str(Path(pipeline.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH")) if p)
    return env


def _run_process(cmd: list[str], root: Path, env: dict, what: str, logger: Any, watch) -> int:
    process = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the signal handling below decides its end
    )
    try:
        stagelog.forward(process.stdout.fileno(), logger, watch=watch)
        return process.wait()
    except BaseException as exc:
        shutdown.stop_child(process, what, shutdown.signal_of(exc) or signal.SIGTERM)
        raise
    finally:
        process.stdout.close()


def stage_task(name: str):
    """A Prefect task running one stage as DVC decides; it returns a StageRun."""

    def run_one(params_path: str, dvc: bool, force: bool) -> StageRun:
        return run_stage(name, params_path, dvc, force, get_run_logger())

    return task(run_one, name=name, cache_policy=NO_CACHE, retries=0)


def _check_params(params_path: str, root: Path) -> None:
    """DVC decides with the project's params.yaml: a flow run on another file would disagree."""
    if Path(params_path).resolve() != (root / "params.yaml").resolve():
        raise ConfigError(
            f"{params_path}: in a DVC project the flows run with its params.yaml (the file "
            "dvc.yaml's params refer to); use `dvc exp run -S key=value` for variants"
        )


def run_stages(
    params_path: str,
    force: bool = False,
    after: Mapping[str, Hook] | None = None,
    on_failure: Mapping[str, Hook] | None = None,
) -> list[StageRun]:
    """Every stage in dvc.yaml's order through `dvc repro` (`--force` when `force`).
    `after[stage]` is called after the stage ran or was skipped, `on_failure[stage]` when it
    raised (then the exception propagates and no later stage runs)."""
    logger = get_run_logger()
    root = load_config(params_path).root
    dvc = is_dvc_project(root)
    if dvc:
        _check_params(params_path, root)
    else:
        logger.info("%s is not a DVC project (no dvc.yaml + .dvc/): every stage runs", root)
    runs = []
    for name in STAGES:
        runs.append(_run_one(name, params_path, dvc, force, (on_failure or {}).get(name)))
        if name in (after or {}):
            after[name](params_path)
    return runs


class StageInterrupted(PipelineError):
    """A stage stopped by something outside it, not by an error of its own: the orchestrator's
    API failing while it recorded the stage (its database restarted, say), the machine. A rerun
    goes on from there: DVC skips the stages that finished, train resumes from its last
    checkpoint."""

    transient = True


def _run_one(name: str, params_path: str, dvc: bool, force: bool, on_failure: Hook | None):
    logger = get_run_logger()
    start = time.monotonic()
    try:
        with shutdown.on_signal(f"stage {name}"):
            run = stage_task(name)(params_path, dvc, force)
    except Exception as exc:
        seconds = time.monotonic() - start
        logger.error("stage %s: failed after %.1f s: %s", name, seconds, _one_line(exc))
        if on_failure:
            _after_failure(name, on_failure, params_path, logger)
        if isinstance(exc, CancelledRun):  # the user cancelled the run: it ends Cancelled
            raise
        if not isinstance(exc, PipelineError):
            raise StageInterrupted(
                f"stage {name}: interrupted after {seconds:.1f} s by {_one_line(exc)}; rerun: "
                "DVC skips the stages that finished, train resumes from its last checkpoint"
            ) from exc
        _name_stage(exc, name)
        raise
    except BaseException as exc:  # Ctrl-C, a signal (flows/shutdown.py): as they are
        logger.error(
            "stage %s: failed after %.1f s: %s", name, time.monotonic() - start, _one_line(exc)
        )
        raise
    if run.ran:
        logger.info("stage %s: done in %.1f s", name, run.seconds)
    elif run.reason == "up to date":
        logger.info("stage %s: up to date (dvc status), skipped", name)
    else:
        logger.info("stage %s: %s, not run", name, run.reason)
    return run


def _after_failure(name: str, hook: Hook, params_path: str, logger: Any) -> None:
    """`hook` (e.g. undoing a registration) after the stage failed; its own failure is logged
    and does not replace the stage's error (the server that failed the stage may fail it too)."""
    try:
        hook(params_path)
    except Exception as exc:
        logger.error("stage %s: the clean-up after it failed failed too: %s", name, _one_line(exc))


def _name_stage(exc: PipelineError, name: str) -> None:
    """The stage's name at the front of its error's message (the flow run's state message
    shows only that), unless it is there already."""
    prefix = f"stage {name}: "
    if exc.args and not str(exc.args[0]).startswith(prefix):
        exc.args = (prefix + str(exc.args[0]), *exc.args[1:])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
