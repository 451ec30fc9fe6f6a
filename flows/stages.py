"""One stage loop for both flows: a stage runs only when DVC says it is stale, and is recorded in
dvc.lock after it ran, so a flow run and `dvc repro` take the same decisions.

For each stage of `pipeline.STAGES` (dvc.yaml's order) the loop asks DVC, just before the stage
would run and after the stages upstream of it have run and been recorded, whether it changed
(`Repo.status(targets=[stage])`, what `dvc status <stage>` prints): the check `dvc repro`
makes. An up-to-date stage is skipped with one log line; a stale one is restored from DVC's
run-cache when `dvc repro` would restore it, else runs `pipeline.<stage>.run(cfg)` as a Prefect
task (its own log lines and progress bars in the run's log, see flows/stagelog.py); either way
it is then recorded as `dvc repro` records it (deps, params and outs hashes into dvc.lock,
cached outs into .dvc/cache). Outside a DVC project
(no dvc.yaml + .dvc/) every stage runs and nothing is recorded. `force` runs every stage, as
`dvc repro --force` does.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import shutdown
from flows.stagelog import stage_logs
from pipeline import STAGE_MODULES, STAGES
from pipeline.config import load_config
from pipeline.errors import ConfigError

Hook = Callable[[str], None]  # called with the params path


@dataclass(frozen=True)
class StageRun:
    """What the loop did with one stage. `result` is the object the stage's `run` returned, as
    is (None when the stage was skipped)."""

    stage: str
    ran: bool
    reason: str  # why it ran (DVC's changes, "forced", ...) or "up to date"
    seconds: float
    result: Any = None


def is_dvc_project(root: Path) -> bool:
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def stale_reason(root: Path, stage: str) -> str | None:
    """DVC's own verdict on one stage: None when up to date, else what changed, in one line
    (`changed deps: params.yaml (tiny modified)`)."""
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


@contextlib.contextmanager
def _stage(root: Path, name: str) -> Iterator[Any]:
    """One stage of the project's dvc.yaml, under DVC's repository lock."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo, repo.lock:
        [stage] = repo.stage.collect(name)
        yield stage


def restore_from_run_cache(root: Path, name: str) -> bool:
    """`dvc repro`'s shortcut: a stale stage that already ran with these very deps, params and
    command gets its outputs back from DVC's run-cache instead of running again."""
    from dvc.stage.cache import RunCacheNotFoundError

    with _stage(root, name) as stage:
        try:
            stage.repo.stage_cache.restore(stage)
        except RunCacheNotFoundError:
            return False
    return True


def record(root: Path, name: str) -> None:
    """Record a stage that just ran (or was restored) as `dvc repro` does after running its
    command: hashes into dvc.lock, cached outs into .dvc/cache, and a run-cache entry only when
    every output is cached (a stage with side effects, like register, is never replayed)."""
    with _stage(root, name) as stage:
        uncached = any(
            not out.use_cache for out in stage.outs if not (out.is_metric or out.is_plot)
        )
        stage.save(run_cache=not uncached)
        stage.commit()
        stage.dvcfile.dump_stages([stage], update_pipeline=False)


def stage_function(name: str) -> Callable[[Any], Any]:
    """The stage module's `run`: the function `python -m pipeline <name>` (dvc.yaml's cmd) calls."""
    return importlib.import_module(STAGE_MODULES[name]).run


def stage_task(name: str):
    """A Prefect task running `pipeline.<name>.run(cfg)`, then recording it in dvc.lock when
    `dvc`; it returns the stage's result object as is."""

    def run_stage(params_path: str, dvc: bool) -> Any:
        cfg = load_config(params_path)
        with shutdown.on_signal(f"stage {name}"), stage_logs(get_run_logger()):
            result = stage_function(name)(cfg)
        if dvc:
            record(cfg.root, name)
        return result

    return task(run_stage, name=name, cache_policy=NO_CACHE, retries=0)


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
    """Every stage in dvc.yaml's order, each run only when DVC says it is stale (every one when
    `force`). `after[stage]` is called after the stage ran or was skipped, `on_failure[stage]`
    when it raised (then the exception propagates and no later stage runs)."""
    logger = get_run_logger()
    root = load_config(params_path).root
    dvc = is_dvc_project(root)
    if dvc:
        _check_params(params_path, root)
    else:
        logger.info("%s is not a DVC project (no dvc.yaml + .dvc/): every stage runs", root)
    runs = []
    for name in STAGES:
        reason = "forced" if force else stale_reason(root, name) if dvc else "no DVC project"
        if reason is None:
            logger.info("stage %s: up to date (dvc status), skipped", name)
            runs.append(StageRun(name, False, "up to date", 0.0))
        elif dvc and not force and restore_from_run_cache(root, name):
            record(root, name)
            logger.info("stage %s: restored from DVC's run-cache (%s), not run", name, reason)
            runs.append(StageRun(name, False, f"restored from run-cache ({reason})", 0.0))
        else:
            runs.append(_run_one(name, reason, params_path, dvc, (on_failure or {}).get(name)))
        if name in (after or {}):
            after[name](params_path)
    return runs


def _run_one(name: str, reason: str, params_path: str, dvc: bool, on_failure: Hook | None):
    logger = get_run_logger()
    logger.info("stage %s: started (%s)", name, reason)
    start = time.monotonic()
    try:
        with shutdown.on_signal(f"stage {name}"):
            result = stage_task(name)(params_path, dvc)
    except BaseException as exc:
        logger.error(
            "stage %s: failed after %.1f s: %s", name, time.monotonic() - start, _one_line(exc)
        )
        if on_failure and isinstance(exc, Exception):
            on_failure(params_path)
        raise
    seconds = time.monotonic() - start
    logger.info("stage %s: done in %.1f s", name, seconds)
    return StageRun(name, True, reason, round(seconds, 1), result)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
