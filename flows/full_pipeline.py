"""The whole pipeline as a Prefect flow: one task per stage, in dvc.yaml's order, each running
`dvc repro --single-item <stage>` (flows/stages.py), so DVC decides what runs.

    python -m flows.full_pipeline [--force]

Without PREFECT_API_URL, Prefect runs it on a temporary local server. Stage outputs are cached
by DVC, not Prefect: on an up-to-date project the flow runs nothing, as `dvc repro` would, and
DVC records every stage that runs in dvc.lock, so `dvc status` stays clean. `--force` runs
every stage, as `dvc repro --force`. No stage is retried (training is not transient). SIGTERM
stops it within seconds (flows/shutdown.py); training resumes from its last checkpoint on the
next run.
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import shutdown
from flows.stages import StageRun, run_stages
from pipeline.config import load_config
from pipeline.environment import offline_env
from pipeline.errors import PipelineError


@flow(name="qwen-medical-pipeline")
def full_pipeline(params_path: str = "params.yaml", force: bool = False) -> list[StageRun]:
    """Run dvc.yaml's stages in order through `dvc repro` (`--force` when `force`); a failing
    stage fails the flow run. Returns what DVC did with each stage, with its result object."""
    return run_stages(
        params_path,
        force=force,
        after={"validate": attach_validation_report, "evaluate": attach_report},
        on_failure={"validate": attach_validation_report},  # the report most worth reading
    )


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
    if report.exists():
        create_markdown_artifact(
            key="evaluation-report",
            markdown=report.read_text(encoding="utf-8"),
            description="base vs champion vs challenger on the held-out test split",
        )


def prepare_process() -> None:
    """Entry points only: offline defaults, no telemetry, SIGTERM that exits cleanly."""
    offline_env()
    shutdown.exit_on_signal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.full_pipeline")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--force", action="store_true", help="run every stage, as `dvc repro --force`"
    )
    args = parser.parse_args()
    prepare_process()
    try:
        runs = full_pipeline(args.params, args.force)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    ran = [r.stage for r in runs if r.ran]
    print(f"ran {', '.join(ran)}" if ran else "every stage up to date: nothing ran")


if __name__ == "__main__":
    main()
