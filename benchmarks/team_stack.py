"""Figures of the team stack (docs/team.md), on this machine, one run each.

    .venv/bin/python benchmarks/team_stack.py [--out benchmarks/results/team_stack.md]

1. `python -m team up` from nothing (initdb, migrations, accounts, deployment), `down`, `up`
   again with the data kept, and `up` while everything runs (the no-op).
2. The tiny pipeline (`dvc repro` of the test suite's tiny project, tests/conftest.py) through
   the stack (`. .team/env`: MLflow on PostgreSQL + S3, as `trainer`) and on the sqlite default,
   in two fresh copies; the ratio of their wall times.
3. Bytes uploaded per registered version: what the `mlflow` bucket gained during that run.
4. `python -m pipeline registry list` and `chat` (a fresh process each, as a user runs them)
   against the server and against the sqlite default.

Everything runs in a temp folder on loopback ports; the stack is stopped by pid at the end.
On a shared 2-core machine other processes' load goes straight into these numbers: the load
average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from team.stack import Stack  # noqa: E402
from tests.conftest import PERMISSIVE_GATE, TINY_OVERRIDES, read_rows  # noqa: E402
from tests.e2e import servers  # noqa: E402

ROWS = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:60]
QUESTION = "感冒有什么症状？"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} -> {out.returncode}\n{out.stderr[-3000:]}")
    return time.monotonic() - t0


def bucket_bytes(stack: Stack) -> int:
    import boto3

    env = stack.read_env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
    return sum(o["Size"] for page in pages for o in page.get("Contents", []))


def stack_times(stack: Stack) -> dict[str, float]:
    cmd = [sys.executable, "-m", "team"]
    where = ["--dir", str(stack.folder), "--project", str(stack.project)]
    env = servers.env()
    times = {"team up, from nothing": timed(cmd + ["up", *where], REPO, env)}
    times["team down"] = timed(cmd + ["down", *where], REPO, env)
    times["team up, data kept"] = timed(cmd + ["up", *where], REPO, env)
    times["team up, all running (no-op)"] = timed(cmd + ["up", *where], REPO, env)
    return times


def pipeline_times(tmp: Path, stack: Stack) -> tuple[dict[str, float], int]:
    overrides = TINY_OVERRIDES | PERMISSIVE_GATE
    local = servers.dvc_project(tmp / "local", ROWS, overrides)
    shared = servers.dvc_project(tmp / "shared", ROWS, overrides)
    env_local = servers.env(PYTHONPATH=str(local))
    env_team = servers.env(PYTHONPATH=str(shared)) | stack.read_env()
    repro = [sys.executable, "-m", "dvc", "repro"]
    times = {"dvc repro, sqlite default": timed(repro, local, env_local)}
    before = bucket_bytes(stack)
    times["dvc repro, team stack"] = timed(repro, shared, env_team)
    uploaded = bucket_bytes(stack) - before
    cli = [sys.executable, "-m", "pipeline"]
    for name, root, env in (("sqlite", local, env_local), ("team", shared, env_team)):
        times[f"registry list, {name}"] = timed(cli + ["registry", "list"], root, env)
        times[f"chat, {name}"] = timed(cli + ["chat", QUESTION], root, env)
    return times, uploaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/team_stack.md")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="team-bench-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as `postgres` under root: it must reach the folder
    project = servers.dvc_project(base / "deploy", ROWS, TINY_OVERRIDES)
    stack = Stack(base / "stack", project)
    load0 = os.getloadavg()
    try:
        times = stack_times(stack)
        more, uploaded = pipeline_times(base, stack)
        times |= more
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
    load1 = os.getloadavg()
    ratio = times["dvc repro, team stack"] / times["dvc repro, sqlite default"]
    lines = [
        f"# Team stack figures ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"{os.cpu_count()} CPUs; load average before {load0[0]:.1f}, after {load1[0]:.1f}",
        "",
        "| what | seconds |",
        "|---|---|",
        *(f"| {k} | {v:.1f} |" for k, v in times.items()),
        "",
        f"- pipeline through the team stack / sqlite default: {ratio:.2f}x",
        f"- bytes uploaded to s3://mlflow for one registered version: {uploaded:,}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
