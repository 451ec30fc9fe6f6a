"""The whole pipeline as a Prefect flow: the same stage functions as `dvc repro`, as tasks,
in dvc.yaml's order.

    python -m flows.full_pipeline [--params params.yaml]

Without PREFECT_API_URL, Prefect runs it on a temporary local server. Stage outputs are cached
by DVC, not Prefect, so tasks never cache; no stage is retried (training is not transient).
In a DVC project (dvc.yaml + .dvc/), each stage is recorded in dvc.lock after it succeeds
(`dvc commit --force <stage>`), so a flow run leaves dvc.lock as `dvc repro` would and
`dvc status` clean.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import STAGES
from pipeline.__main__ import OFFLINE_DEFAULTS
from pipeline.config import load_config


def is_dvc_project(root: Path) -> bool:
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def dvc_commit(root: Path, stage: str) -> None:
    """Record a stage that just ran in dvc.lock (deps, params and outs hashes; cached outs go
    to DVC's cache), as `dvc repro` does after running its command."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.commit(stage, force=True)


def stage_task(name: str):
    """A Prefect task running `pipeline.<name>.run(cfg)`, then recording it in dvc.lock."""

    def run_stage(params_path: str) -> str:
        module = importlib.import_module(f"pipeline.{name}")
        cfg = load_config(params_path)
        result = module.run(cfg)
        if is_dvc_project(cfg.root):
            dvc_commit(cfg.root, name)
        return repr(result)[:500]

    return task(run_stage, name=name, cache_policy=NO_CACHE, retries=0)


@flow(name="qwen-medical-pipeline", log_prints=True)
def full_pipeline(params_path: str = "params.yaml") -> list[str]:
    """Run every stage of dvc.yaml in order; a failing stage fails the flow run."""
    logger = get_run_logger()
    results = []
    for name in STAGES:
        logger.info("stage %s", name)
        try:
            results.append(stage_task(name)(params_path))
        finally:  # a failed validation is the report most worth reading
            if name == "validate":
                attach_validation_report(params_path)
        if name == "evaluate":
            attach_report(params_path)
    return results


def attach_validation_report(params_path: str) -> None:
    """The data validation summary (counts and examples per rule) on the flow run."""
    report = load_config(params_path).paths.validation_reports / "summary.md"
    if report.exists():
        create_markdown_artifact(
            key="data-validation",
            markdown=report.read_text(encoding="utf-8"),
            description="validation rules, policies, quarantine (GX Data Docs next to it)",
        )


def attach_report(params_path: str) -> None:
    """The evaluation report (metrics, gate verdict, side-by-side answers) on the flow run."""
    report = load_config(params_path).paths.reports / "eval_report.md"
    create_markdown_artifact(
        key="evaluation-report",
        markdown=report.read_text(encoding="utf-8"),
        description="base vs champion vs challenger on the held-out test split",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.full_pipeline")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    full_pipeline(args.params)


if __name__ == "__main__":
    main()
