"""Helpers for the `team` tests: workspaces (git clones of one bare origin), the stack's
clients (MLflow REST as an account, Prefect with the auth string, S3, PostgreSQL), workers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from team import accounts, services
from team.stack import Stack
from tests.e2e import servers

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
DEPLOYMENT = f"qwen-medical-nightly/{services.DEPLOYMENT}"


@dataclass
class Team:
    """One running stack, its bare git origin and two workspaces (A: a laptop, B: the worker)."""

    stack: Stack
    base: Path
    origin: Path
    a: Path
    b: Path

    def env(self, root: Path, account: str = "trainer", **extra: str) -> dict[str, str]:
        """A subprocess's environment in workspace `root`, as `account`."""
        return servers.env(PYTHONPATH=str(root)) | self.stack.read_env(account) | extra

    def mlflow(self, account: str = "viewer") -> accounts.Api:
        env = self.stack.read_env(account)
        return accounts.Api(
            env["MLFLOW_TRACKING_URI"],
            env["MLFLOW_TRACKING_USERNAME"],
            env["MLFLOW_TRACKING_PASSWORD"],
        )

    def s3(self):
        import boto3

        env = self.stack.read_env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def sql(self, query: str, *args) -> list[tuple]:
        """A query on MLflow's PostgreSQL database."""
        import psycopg2

        secrets = json.loads((self.stack.folder / "secrets.json").read_text())
        port = json.loads((self.stack.folder / "state.json").read_text())["ports"]["postgres"]
        con = psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user="mlflow",
            password=secrets["db_mlflow"],
            dbname="mlflow",
        )
        try:
            with con.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall()
        finally:
            con.close()

    def version(self, name: str, alias: str) -> int | None:
        status, found = self.mlflow().call(
            "GET", "registered-models/alias", {"name": name, "alias": alias}
        )
        return int(found["model_version"]["version"]) if status == 200 else None


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    return servers.run(cmd, cwd, env, timeout)


def git(root: Path, *args: str) -> str:
    return run(GIT + list(args), root, servers.env())


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], root, env)


class Prefect:
    """Sync Prefect client calls with the stack's URL and auth string."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def __call__(self, method: str, *args, **kwargs):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        settings = {
            PREFECT_API_URL: self.env["PREFECT_API_URL"],
            PREFECT_API_AUTH_STRING: self.env["PREFECT_API_AUTH_STRING"],
        }
        with temporary_settings(settings):
            with get_client(sync_client=True) as client:
                return getattr(client, method)(*args, **kwargs)

    def trigger(self, **parameters):
        deployment = self("read_deployment_by_name", DEPLOYMENT)
        return self("create_flow_run_from_deployment", deployment.id, parameters=parameters).id

    def wait(self, flow_run_id, timeout: float, log: Path):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self("read_flow_run", flow_run_id)
            if found.state and found.state.is_final():
                return found
            time.sleep(2)
        raise AssertionError(f"flow run not finished in {timeout} s\n{servers.tail(log)}")


@contextlib.contextmanager
def worker(team: Team, root: Path, log: Path, name: str = "w1", **extra: str) -> Iterator:
    """A process worker on the stack's pool in workspace `root` (`extra`: more environment for
    it and its flow runs); stopped (by pid) on the way out. One torch thread each: two workers
    share 2 cores."""
    env = team.env(
        root,
        PREFECT_HOME=str(log.parent / f"prefect-{name}"),
        PREFECT_WORKER_QUERY_SECONDS="2",
        OMP_NUM_THREADS="1",
        **extra,
    )
    cmd = [str(servers.BIN / "prefect"), "worker", "start", "--pool", services.POOL]
    cmd += ["--type", "process", "--name", name]
    with servers.process(cmd, root, env, log) as proc:
        yield proc


def saved_checkpoint_since(checkpoints: Path, started: float) -> bool:
    """Whether a training run started after `started` has saved a complete checkpoint: one whose
    trainer_state.json (the Trainer writes it last) is newer. Not a directory's own mtime: train
    removes a stale run's checkpoints file by file when it starts, and each removal makes that
    old directory newer than `started` before a single step is taken."""
    from pipeline.training.resume import complete

    for checkpoint in checkpoints.glob("checkpoint-*"):
        with contextlib.suppress(OSError):  # removed while being looked at
            if complete(checkpoint) and (
                (checkpoint / "trainer_state.json").stat().st_mtime > started
            ):
                return True
    return False


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
