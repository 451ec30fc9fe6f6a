"""Nightly retraining: retrain, gate and register only when the data, params or code changed.

Deployed from prefect.yaml (`make deploy`: cron `0 2 * * *`, Asia/Shanghai, on the
`medical-process` process work pool); run it once by hand with

    python -m flows.nightly [--params params.yaml] [--data-sync none|pull|update] [--force]

1. `sync-data` (optional): `dvc pull` or `dvc update` of the DVC-tracked files under data/
   (network: retried with exponential back-off).
2. Change detection (registry/fingerprint.py, the very functions that write the lineage tags at
   registration): data_sha256 (the files `ingest.sources` match), params_sha256 (the typed
   config) and code_sha256 (the pipeline code and dvc.yaml) against those tags on the latest
   registered version, refused or not (a registry read: retried). All equal: the run completes
   as "skipped: data, params and code unchanged since version N" and trains nothing; otherwise
   the reason names what changed ("params changed since version N").
3. Otherwise the stages of `pipeline.STAGES` (dvc.yaml's order) run through `dvc repro` as in
   flows.full_pipeline (flows/stages.py: one loop for both flows; DVC runs the stale ones and
   records them in dvc.lock), inside the global concurrency limit `qwen-medical-training` (one
   training at a time; a limit missing on the server is skipped, never waited for). `--force`
   skips the change detection and runs every stage, as `dvc repro --force`. Stages are never
   retried: training is not a transient failure.
4. With `evaluate.gate.require_approval`, a version that passed the gate is registered without
   moving `champion`; the flow then pauses (outside the training limit), shows the evaluation
   report as the artifact `approval-request` and waits up to `approval_timeout_s` for an
   `Approval` (approve, reviewer, comment) in the Prefect UI's Resume form. Approve: `champion`
   moves; reject: it stays; either way the decision is tagged `approval` on the version. No
   answer in time: `champion` stays, the version is tagged so, and Prefect ends the run Failed
   ("never resumed").
5. The validation summary, the evaluation report and the run's outcome are Prefect artifacts.
   A failing stage fails the run with its PipelineError message, named by the stage (`stage
   train: ...`; an error from outside the stage, e.g. the Prefect server failing while it
   records the stage, is a StageInterrupted that says so); a registration that fails half-way
   is undone (new versions deleted, `champion` restored). The deployment's runs retry a 500
   from the Prefect server (prefect.yaml), which is what it answers while its database
   restarts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Completed
from prefect.tasks import exponential_backoff
from pydantic import Field

from flows import shutdown, stages
from flows.full_pipeline import attach_report, attach_validation_report, prepare_process
from pipeline.config import load_config
from pipeline.environment import offline_env
from pipeline.errors import PipelineError
from pipeline.registry import fingerprint

if TYPE_CHECKING:
    from pipeline.registry.register import RegisterResult

TRAINING_LIMIT = "qwen-medical-training"  # global concurrency limit (make deploy creates it)
DataSync = Literal["none", "pull", "update"]


def _transient(task, task_run, state) -> bool:
    """Retry network and server hiccups, not the user's errors (bad config, bad data); an
    unreachable registry (RegistryUnavailable) is a hiccup."""
    try:
        state.result()
    except PipelineError as exc:
        return exc.transient
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


@task(name="fingerprints", cache_policy=NO_CACHE)
def fingerprints(params_path: str) -> dict[str, str]:
    from pipeline.registry import fingerprint

    return fingerprint.current(load_config(params_path))


@task(name="latest-registered-version", **RETRY)
def latest_registered(params_path: str) -> dict[str, Any] | None:
    from pipeline.registry import versions as registry

    latest = registry.latest_version(load_config(params_path))
    if latest is None:
        return None
    lineage = {k: v for k, v in latest["tags"].items() if k.startswith("lineage.")}
    return {"version": latest["version"], "tags": lineage}


@task(name="registry-snapshot", **RETRY)
def registry_snapshot(params_path: str) -> dict[str, Any]:
    from pipeline.registry import versions as registry

    return registry.snapshot(load_config(params_path))


@task(name="undo-registration", **RETRY)
def undo_registration(params_path: str, before: dict[str, Any]) -> list[int]:
    from pipeline.registry import versions as registry

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


def _failure_outcome(exc: Exception) -> None:
    """The `nightly-result` artifact of a failed run, when the server takes it: the server may
    be what failed the stage (its database restarting), and the stage's error, not this one,
    is what the run must end with."""
    try:
        _outcome(f"failed: {type(exc).__name__}", {"reason": str(exc)[:2000]})
    except Exception as report:  # noqa: BLE001 - logged; the stage's error is raised
        get_run_logger().warning("nightly-result artifact not recorded: %s", report)


AFTER_STAGE = {"validate": attach_validation, "evaluate": attach_report}


def run_stages(params_path: str, force: bool = False) -> list[stages.StageRun]:
    """The stages in dvc.yaml's order through `dvc repro` (flows/stages.py; every one when
    `force`, as `dvc repro --force`); a failed registration is rolled back, a failed
    validation says which conversations broke which rule."""
    before = registry_snapshot(params_path)
    return stages.run_stages(
        params_path,
        force=force,
        after=AFTER_STAGE,
        on_failure={
            "validate": attach_validation,
            "register": lambda p: undo_registration(p, before),
        },
    )


class Approval(RunInput):
    """The reviewer's answer, a form on the paused flow run in the Prefect UI."""

    approve: bool = Field(description="true: `champion` moves to this version; false: it stays")
    reviewer: str = Field(default="", description="who decided (recorded on the version)")
    comment: str = Field(default="", description="why (recorded on the version)")


@task(name="record-approval", **RETRY)
def record_approval(params_path: str, version: int, decision: str, promote: bool) -> str:
    """Tag the version with the reviewer's decision; move `champion` to it when approved."""
    from pipeline.registry import versions as registry

    cfg = load_config(params_path)
    c = registry.client(cfg)
    c.set_model_version_tag(cfg.register_.model_name, str(version), "approval", decision)
    return registry.promote(cfg, str(version)) if promote else decision


def await_approval(params_path: str, registration: RegisterResult) -> tuple[bool, str]:
    """Pause until a reviewer approves or rejects the version (evaluate.gate.require_approval);
    (promoted, what happened). No answer within approval_timeout_s: `champion` stays."""
    logger = get_run_logger()
    cfg = load_config(params_path)
    timeout = cfg.evaluate.gate.approval_timeout_s
    name, version = registration.model_name, registration.version
    report = cfg.paths.reports / "eval_report.md"
    create_markdown_artifact(
        key="approval-request",
        markdown=report.read_text(encoding="utf-8"),
        description=f"{name} version {version} passed the gate: approve or reject it",
    )
    ask = Approval.with_initial_data(
        description=(
            f"**{name} version {version} passed the gate.** Its evaluation report is this run's "
            f"artifact `approval-request`. Approve: `champion` moves to version {version}. "
            f"Reject, or no answer within {timeout} s: `champion` stays where it is."
        ),
        approve=False,
    )
    logger.info("waiting up to %d s for approval of %s version %s", timeout, name, version)
    try:
        with shutdown.on_signal("the approval wait"):
            answer = pause_flow_run(wait_for_input=ask, timeout=timeout, poll_interval=5)
    except FlowPauseTimeout:
        decision = f"no decision within {timeout} s"
        record_approval(params_path, version, decision, promote=False)
        return False, f"not promoted: {decision}"
    who = answer.reviewer or "a reviewer"
    verb = "approved" if answer.approve else "rejected"
    decision = f"{verb} by {who}" + (f": {answer.comment}" if answer.comment else "")
    logger.info("%s version %s %s", name, version, decision)
    record_approval(params_path, version, decision, promote=answer.approve)
    return answer.approve, ("promoted to champion, " if answer.approve else "not promoted: ") + (
        decision
    )


def _registered(runs: list[stages.StageRun]) -> RegisterResult | None:
    """The register stage's result when it ran in this flow run."""
    return next((r.result for r in runs if r.stage == "register" and r.ran), None)


@flow(name="qwen-medical-nightly")
def nightly_retrain(
    params_path: str = "params.yaml",
    data_sync: DataSync = "none",
    force: bool = False,
    training_limit: str = TRAINING_LIMIT,
    limit_timeout_s: float = 12 * 3600,
):
    """Retrain, evaluate, gate and register when the data, params or code changed since the
    latest registered version (the stages DVC says are stale); with evaluate.gate.require_approval,
    wait for a reviewer before `champion` moves."""
    offline_env()  # a worker's flow-run process has no main()
    logger = get_run_logger()
    logger.info(sync_data(params_path, data_sync))
    current = fingerprints(params_path)
    latest = latest_registered(params_path)
    retrain, why = fingerprint.decide(current, latest)
    if not retrain and not force:
        message = f"skipped: {why}"
        details = {**current, "latest_version": latest["version"]}
        logger.info(message)
        _outcome(message, details)
        return Completed(message=message, data={"status": "skipped", **details})

    reason = "forced" if force else why
    logger.info("training: %s (%s)", reason, ", ".join(f"{k} {v[:12]}" for k, v in current.items()))
    try:
        with concurrency(training_limit, occupy=1, timeout_seconds=limit_timeout_s, strict=False):
            runs = run_stages(params_path, force)
    except Exception as exc:
        _failure_outcome(exc)
        raise
    ran = [r.stage for r in runs if r.ran] or ["none"]
    registration = _registered(runs)
    if registration is None:
        message = f"{reason}: nothing registered (dvc repro: register up to date)"
        _outcome(message, {**current, "stages run": ", ".join(ran)})
        return Completed(message=message, data={"status": "up to date", "ran": ran})
    promoted = registration.promoted
    verdict = "promoted to champion" if promoted else "not promoted (gate failed)"
    if registration.awaiting_approval:  # outside the training limit: nothing trains now
        promoted, verdict = await_approval(params_path, registration)
    message = f"trained ({reason}): registered version {registration.version}, {verdict}"
    logger.info(message)
    _outcome(
        message,
        {**current, "run_id": registration.run_id, "stages run": ", ".join(ran)},
    )
    return Completed(
        message=message,
        data={"status": "trained", "version": registration.version, "promoted": promoted},
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.nightly")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-sync", default="none", choices=["none", "pull", "update"])
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even if nothing changed: every stage runs, as `dvc repro --force`",
    )
    args = parser.parse_args()
    prepare_process()
    state = nightly_retrain(args.params, args.data_sync, args.force, return_state=True)
    print(f"{state.name}: {state.message}")
    if not state.is_completed():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
