"""Nightly retraining: retrain, gate and register only when the data changed.

Deployed from prefect.yaml (`make deploy`: cron `0 2 * * *`, Asia/Shanghai, on the
`medical-process` process work pool); run it once by hand with

    python -m flows.nightly [--params params.yaml] [--data-sync none|pull|update] [--force]

1. `sync-data` (optional): `dvc pull` or `dvc update` of the DVC-tracked files under data/
   (network: retried with exponential back-off).
2. Change detection: the SHA-256 of the files `ingest.sources` match (the very function that
   writes the `lineage.data_sha256` tag at registration) against that tag on the latest registered
   version (a registry read: retried). Equal: the run completes as "skipped: data unchanged
   since version N" and trains nothing.
3. Otherwise every stage of `pipeline.STAGES` (dvc.yaml's order) runs as in
   flows.full_pipeline, each recorded in dvc.lock, inside the global concurrency limit
   `qwen-medical-training` (one training at a time; a limit missing on the server is skipped,
   never waited for). Stages are never retried: training is not a transient failure.
4. The validation summary, the evaluation report and the run's outcome are Prefect artifacts.
   A failing stage fails the run with its PipelineError message; a registration that fails
   half-way is undone (new versions deleted, `champion` restored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from flows.full_pipeline import attach_report, attach_validation_report, stage_task
from pipeline import STAGES
from pipeline.__main__ import OFFLINE_DEFAULTS
from pipeline.config import load_config
from pipeline.errors import PipelineError

TRAINING_LIMIT = "qwen-medical-training"  # global concurrency limit (make deploy creates it)
DataSync = Literal["none", "pull", "update"]


def _transient(task, task_run, state) -> bool:
    """Retry network and server hiccups, not the user's errors (bad config, bad data)."""
    try:
        state.result()
    except PipelineError:
        return False
    except Exception:
        return True
    return False


RETRY = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=10),  # 10 s, 20 s, 40 s
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": _transient,
    "cache_policy": NO_CACHE,
}


def _dvc(root: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed: {(out.stderr or out.stdout)[-2000:]}")
    return out.stdout


def _is_import(dvc_file: Path) -> bool:
    """`dvc import` / `dvc import-url` files have deps (their source); plain `dvc add` not."""
    return bool((yaml.safe_load(dvc_file.read_text()) or {}).get("deps"))


@task(name="sync-data", **RETRY)
def sync_data(params_path: str, mode: DataSync) -> str:
    """`pull`: fetch the data that git's .dvc files reference from the DVC remote.
    `update`: bring `dvc import` data up to its source's newest version."""
    if mode == "none":
        return "data sync: off"
    root = load_config(params_path).root
    targets = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.dvc"))
    if mode == "update":
        targets = [t for t in targets if _is_import(root / t)]
    if not targets:
        return f"data sync: no DVC-tracked data to {mode} under data/"
    _dvc(root, mode, *targets)
    return f"data sync: dvc {mode} {' '.join(targets)}"


@task(name="data-fingerprint", cache_policy=NO_CACHE)
def data_fingerprint(params_path: str) -> str:
    from pipeline import register

    return register.data_sha256(load_config(params_path))


@task(name="latest-registered-version", **RETRY)
def latest_registered(params_path: str) -> dict[str, Any] | None:
    from pipeline import registry

    latest = registry.latest_version(load_config(params_path))
    if latest is None:
        return None
    return {"version": latest["version"], "data_sha256": latest["tags"].get("lineage.data_sha256")}


@task(name="registry-snapshot", **RETRY)
def registry_snapshot(params_path: str) -> dict[str, Any]:
    from pipeline import registry

    return registry.snapshot(load_config(params_path))


@task(name="undo-registration", **RETRY)
def undo_registration(params_path: str, before: dict[str, Any]) -> list[int]:
    from pipeline import registry

    return registry.restore(load_config(params_path), before)


def attach_validation(params_path: str) -> None:
    """The validation summary (verdict, then count, policy and examples per rule that fired) as a
    table on the flow run; the full markdown summary is the `data-validation` artifact."""
    path = load_config(params_path).paths.validation_reports / "summary.json"
    if not path.exists():
        return
    summary = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        {
            "rule": rule,
            "policy": info["policy"],
            "conversations": info["count"],
            "where": "; ".join(f"{e['where']} ({e['reason']})" for e in info["examples"]),
        }
        for rule, info in summary["rules"].items()
        if info["count"]
    ] or [{"rule": "all rules", "policy": "-", "conversations": 0, "where": "passed"}]
    attach_validation_report(params_path)
    create_table_artifact(
        key="validation-summary",
        table=rows,
        description=(
            f"{summary['verdict']}: {summary['conversations_in']} conversations in "
            f"{', '.join(summary['files'])}; {summary['kept']} kept, "
            f"{summary['quarantined']} quarantined"
        ),
    )


def _outcome(message: str, details: dict[str, Any]) -> None:
    lines = [f"## {message}", ""] + [f"- **{k}**: {v}" for k, v in details.items()]
    create_markdown_artifact(key="nightly-result", markdown="\n".join(lines), description=message)


AFTER_STAGE = {"validate": attach_validation, "evaluate": attach_report}


def run_stages(params_path: str) -> dict[str, Any]:
    """Every stage in dvc.yaml's order; a failed registration is rolled back."""
    before = registry_snapshot(params_path)
    registration: dict[str, Any] = {}
    for name in STAGES:
        try:
            stage_task(name)(params_path)
        except Exception:
            if name == "validate":
                attach_validation(params_path)  # say which conversations broke which rule
            if name == "register":
                undo_registration(params_path, before)
            raise
        if name in AFTER_STAGE:
            AFTER_STAGE[name](params_path)
        if name == "register":
            registration = read_registration(params_path)
    return registration


def read_registration(params_path: str) -> dict[str, Any]:
    path = load_config(params_path).paths.reports / "registration.json"
    return json.loads(path.read_text(encoding="utf-8"))


@flow(name="qwen-medical-nightly", log_prints=True)
def nightly_retrain(
    params_path: str = "params.yaml",
    data_sync: DataSync = "none",
    force: bool = False,
    training_limit: str = TRAINING_LIMIT,
    limit_timeout_s: float = 12 * 3600,
):
    """Retrain, evaluate, gate and register when the ingest sources changed since the latest
    registered version."""
    for key, value in OFFLINE_DEFAULTS.items():  # a worker's flow-run process has no main()
        os.environ.setdefault(key, value)
    logger = get_run_logger()
    logger.info(sync_data(params_path, data_sync))
    current = data_fingerprint(params_path)
    latest = latest_registered(params_path)
    if latest and latest["data_sha256"] == current and not force:
        message = f"skipped: data unchanged since version {latest['version']}"
        details = {"data_sha256": current, "latest_version": latest["version"]}
        logger.info(message)
        _outcome(message, details)
        return Completed(message=message, data={"status": "skipped", **details})

    reason = "forced" if force else "no registered version" if not latest else "data changed"
    logger.info("training: %s (data_sha256 %s)", reason, current[:12])
    try:
        with concurrency(training_limit, occupy=1, timeout_seconds=limit_timeout_s, strict=False):
            registration = run_stages(params_path)
    except Exception as exc:
        _outcome(f"failed: {type(exc).__name__}", {"reason": str(exc)[:2000]})
        raise
    promoted = "champion" in registration["aliases"]
    message = f"trained ({reason}): registered version {registration['version']}, " + (
        "promoted to champion" if promoted else "not promoted (gate failed)"
    )
    _outcome(message, {"data_sha256": current, "run_id": registration["run_id"]})
    return Completed(
        message=message,
        data={"status": "trained", "version": registration["version"], "promoted": promoted},
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.nightly")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-sync", default="none", choices=["none", "pull", "update"])
    parser.add_argument("--force", action="store_true", help="train even if the data is unchanged")
    args = parser.parse_args()
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(nightly_retrain(args.params, args.data_sync, args.force))


if __name__ == "__main__":
    main()
