"""Each server of the stack: how it starts (command, environment, health check) and what is
set up on it afterwards (MLflow accounts, Prefect pool / limit / deployment, the DVC remote).

Passwords reach the servers through environment variables and 0600 files, never a command
line (which every local user can read in `ps`)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from team import accounts, objectstore, postgres, proc
from team.errors import StackError

if TYPE_CHECKING:
    from team.stack import Stack

TEAM_CODE = Path(__file__).resolve().parents[1]  # the folder holding the `team` package
BIN = Path(sys.executable).parent
POOL = "medical-process"
TRAINING_LIMIT = "qwen-medical-training"
DEPLOYMENT = "nightly-retrain"
# SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which MLflow does not install: name
# the psycopg2 driver.
STARTUP_S = 150  # two busy cores: MLflow's and Prefect's first migrations take a while


def _base_env() -> dict[str, str]:
    """This environment without another stack's client settings."""
    prefixes = ("MLFLOW_", "PREFECT_", "AWS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def start_postgres(stack: Stack, port: int, sec: dict[str, str]) -> int:
    folder = stack.folder / "postgres"
    postgres.init(folder, sec["postgres"])
    pid = postgres.start(folder, port)
    roles = {"mlflow": sec["db_mlflow"], "prefect": sec["db_prefect"]}
    postgres.create_databases(port, sec["postgres"], roles)
    return pid


def start_s3(stack: Stack, ports: dict, pids: dict, sec: dict[str, str], save) -> None:
    folder, marker = stack.folder / "s3", str(stack.folder)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    if not proc.alive(pids.get("s3"), marker):
        cmd = objectstore.command(
            folder, ports["s3"], ports["weed"], sec["s3_key"], sec["s3_secret"]
        )
        save(s3=proc.start(cmd, folder / "weed.log", _base_env(), folder))

    def ready() -> bool:  # a boto3 client only once the port is open: it costs CPU
        keys = sec["s3_key"], sec["s3_secret"]
        return proc.port_open(ports["s3"]) and objectstore.buckets_ready(endpoint, *keys)

    proc.wait(ready, f"S3 store at {endpoint}", folder / "weed.log", STARTUP_S, pids["s3"])


def _auth_ini(folder: Path, sec: dict[str, str], pg_port: int) -> Path:
    db = postgres.url("postgresql+psycopg2", "mlflow", sec["db_mlflow"], pg_port, "mlflow_auth")
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {db}\nadmin_username = admin\nadmin_password = {sec['admin']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A password is checked by PBKDF2 on every request unless cached: ~3 s a request on a
        # busy 2-core machine (measured). One worker here, so a password change or deletion
        # through the API is seen at once.
        "auth_cache_ttl_seconds = 60\n"
    )
    ini.chmod(0o600)
    return ini


def start_mlflow(stack: Stack, ports: dict, pids: dict, sec: dict[str, str], s3, save) -> None:
    """MLflow tracking + registry: rows in PostgreSQL, artifacts proxied to s3://mlflow."""
    folder, marker = stack.folder / "mlflow", str(stack.folder)
    url = f"http://127.0.0.1:{ports['mlflow']}"
    folder.mkdir(parents=True, exist_ok=True)
    if not proc.alive(pids.get("mlflow"), marker):
        s3.result()  # artifacts go there: the store first
        environ = _base_env() | {
            "PYTHONPATH": str(TEAM_CODE),
            "MLFLOW_BACKEND_STORE_URI": postgres.url(
                "postgresql+psycopg2", "mlflow", sec["db_mlflow"], ports["postgres"], "mlflow"
            ),
            "MLFLOW_AUTH_CONFIG_PATH": str(_auth_ini(folder, sec, ports["postgres"])),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": sec["flask"],
            "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
            "AWS_ACCESS_KEY_ID": sec["s3_key"],
            "AWS_SECRET_ACCESS_KEY": sec["s3_secret"],
            "AWS_DEFAULT_REGION": "us-east-1",
            # No background job runner (online scoring, trace archival): not used here
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        cmd = [sys.executable, "-m", "team.mlflow_server", "server", "--host", "127.0.0.1"]
        cmd += ["--port", str(ports["mlflow"]), "--workers", "1", "--app-name", "basic-auth"]
        cmd += ["--artifacts-destination", "s3://mlflow/artifacts"]
        save(mlflow=proc.start(cmd, folder / "mlflow.log", environ, folder))
    ok = lambda: proc.http_ok(f"{url}/health")  # noqa: E731
    proc.wait(ok, f"MLflow server at {url}", folder / "mlflow.log", STARTUP_S, pids["mlflow"])


def prefect_auth_header(auth_string: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def start_prefect(stack: Stack, ports: dict, pids: dict, sec: dict[str, str], save) -> None:
    """Prefect server: its database in PostgreSQL, every API call needs the auth string."""
    folder, marker = stack.folder / "prefect", str(stack.folder)
    url = f"http://127.0.0.1:{ports['prefect']}/api"
    folder.mkdir(parents=True, exist_ok=True)
    if not proc.alive(pids.get("prefect"), marker):
        environ = _base_env() | {
            "PREFECT_HOME": str(folder / "home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url(
                "postgresql+asyncpg", "prefect", sec["db_prefect"], ports["postgres"], "prefect"
            ),
            "PREFECT_SERVER_API_AUTH_STRING": f"admin:{sec['prefect']}",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
        cmd += ["--port", str(ports["prefect"])]
        save(prefect=proc.start(cmd, folder / "prefect.log", environ, folder))
    headers = prefect_auth_header(f"admin:{sec['prefect']}")
    ok = lambda: prefect_ready(url, headers)  # noqa: E731
    proc.wait(ok, f"Prefect server at {url}", folder / "prefect.log", STARTUP_S, pids["prefect"])


def prefect_ready(url: str, headers: dict[str, str]) -> bool:
    """The Prefect API at `url` answers, and answers a real query."""
    return proc.http_ok(f"{url}/flows/count", headers) and _post_ok(url, headers)


def _post_ok(url: str, headers: dict[str, str]) -> bool:
    """The API answers a real query (the database is migrated and reachable)."""
    import urllib.request

    request = urllib.request.Request(
        f"{url}/flows/count", data=b"{}", method="POST", headers=headers | _JSON
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


_JSON = {"Content-Type": "application/json"}


def provision_signature(stack: Stack) -> dict[str, str]:
    """What each server's set-up depends on: `up` redoes a set-up only when it changed."""
    import hashlib

    from pipeline.config import load_config

    cfg = load_config(stack.project / "params.yaml")
    gated = cfg.evaluate.gate.require_approval
    deployment = hashlib.sha256((stack.project / "prefect.yaml").read_bytes()).hexdigest()
    return {
        "mlflow": f"{cfg.register_.model_name}|{cfg.register_.experiment}|{gated}",
        "prefect": f"{stack.project}|{deployment}",
    }


def provision_mlflow(stack: Stack, env: dict[str, str], sec: dict[str, str]) -> None:
    from pipeline.config import load_config

    cfg = load_config(stack.project / "params.yaml")
    api = accounts.Api(env["MLFLOW_TRACKING_URI"], "admin", sec["admin"])
    passwords = {user: sec[user] for user in accounts.USERS}
    gated = cfg.evaluate.gate.require_approval
    accounts.provision(api, passwords, cfg.register_.model_name, cfg.register_.experiment, gated)


def start_prefect_setup(stack: Stack, env: dict[str, str]) -> subprocess.Popen:
    """What `make deploy` does: the work pool, the training limit, the nightly deployment
    (team/prefect_setup.py: the same `prefect` commands, in one process). Started as soon as the
    server is: it imports Prefect (most of its time) while the server starts, then waits for
    the API itself. `finish_prefect_setup` waits for it."""
    environ = _base_env() | env | {"PREFECT_HOME": str(stack.folder / "prefect" / "client")}
    # `-m` puts the project (cwd) first on sys.path, as the `prefect` command finds its flows
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TEAM_CODE), environ.get("PYTHONPATH")])
    )
    cmd = [sys.executable, "-m", "team.prefect_setup", POOL, TRAINING_LIMIT, DEPLOYMENT]
    cmd += ["--wait", str(STARTUP_S)]
    log = stack.folder / "prefect" / "setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            cmd,
            cwd=stack.project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish_prefect_setup(setup: subprocess.Popen, log: Path) -> None:
    """Wait for `start_prefect_setup`'s process; its output's tail when it failed."""
    try:
        code = setup.wait(timeout=2 * STARTUP_S)
    except subprocess.TimeoutExpired:
        setup.kill()
        setup.wait()
        code = "timed out"
    if code:
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise StackError(f"Prefect set-up (make deploy) failed ({code}; log: {log}):\n{tail}")


def configure_dvc(project: Path, env: dict[str, str], name: str = "team") -> None:
    """The project's default DVC remote: s3://dvc on the stack, keys in .dvc/config.local
    (git-ignored by DVC), so no credential is ever committed."""
    from dvc.config import Config

    with Config(project / ".dvc").edit("local") as conf:
        conf["remote"][name] = {
            "url": "s3://dvc/store",
            "endpointurl": env["AWS_ENDPOINT_URL"],
            "access_key_id": env["AWS_ACCESS_KEY_ID"],
            "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region": "us-east-1",
        }
        conf["core"]["remote"] = name


def usage(stack: Stack, seconds: float) -> str:
    env = stack.read_env()
    rel = os.path.relpath(stack.folder)
    return "\n".join(
        [
            f"team stack up in {seconds:.1f} s (folder {rel}):",
            f"  MLflow   {env['MLFLOW_TRACKING_URI']}  (PostgreSQL rows, artifacts in s3://mlflow)",
            f"  Prefect  {env['PREFECT_API_URL']}  (pool {POOL}, deployment {DEPLOYMENT})",
            f"  S3       {env['AWS_ENDPOINT_URL']}  (buckets mlflow, dvc; DVC remote `team`)",
            f"Use it:   . {rel}/env   (as `trainer`; then make run, make prefect-worker, ...)",
            f"Accounts: . {rel}/env.reviewer | env.viewer | env.admin   after it",
            "Stop:     make team-down   (the data stays for the next make team-up)",
            _timing_lines(stack.timings),
        ]
    )


def _timing_lines(timings: dict[str, tuple[float, float]]) -> str:
    """Each step of the last `up`: its own seconds and when (from the start) it was done.
    Steps run side by side, so their seconds add up to more than the total."""
    if not timings:
        return "Steps:    nothing to start"
    steps = sorted(timings.items(), key=lambda item: item[1][1])
    return "Steps:    " + ", ".join(
        f"{n} {took:.1f} s (done at {at:.1f})" for n, (took, at) in steps
    )
