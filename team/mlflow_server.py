"""`mlflow server --app-name basic-auth` serving `team.mlflow_app:create_app` (MLflow's
basic-auth app plus the protected-alias rule).

MLflow finds an app by its `mlflow.app` entry point and its CLI accepts only the names those
declare; this launcher points `basic-auth` at the factory in this folder (no package re-install
needed; MLflow's own admin bootstrap still runs), then runs MLflow's CLI. Usage as
`mlflow server`: `python -m team.mlflow_server server --app-name basic-auth ...`.

MLflow's CLI migrates the database and creates the admin account, then starts uvicorn as a
second Python process, which imports MLflow, its server and the auth app all over again (about
3 s of CPU, most of what a started store costs). With one worker (`--workers 1`, what the stack
runs) this launcher runs that same uvicorn command line in this process instead, with the
environment MLflow gave it: same app, same options, imported once. uvicorn is imported before
MLflow's server module, which checks for it to turn on its host-header protection, as it does
in the process MLflow would have started."""

from __future__ import annotations

import os
import sys

# isort: off
import uvicorn  # noqa: F401 - before mlflow.server: see the module doc
import mlflow.server
from mlflow.cli import cli

# isort: on

APP_NAME = "basic-auth"
APP = "team.mlflow_app:create_app"


def _run_here(exec_cmd):
    """MLflow's `_exec_cmd`, except that its uvicorn command with one worker runs in this
    process (returns only when the server stopped: then this process exits)."""

    def run(cmd, *args, extra_env=None, **kwargs):
        if not _one_uvicorn_worker(cmd):
            return exec_cmd(cmd, *args, extra_env=extra_env, **kwargs)
        from uvicorn.main import main as uvicorn_main

        os.environ.update(extra_env or {})
        uvicorn_main.main(args=list(cmd[3:]), prog_name="uvicorn")  # exits when it stops
        sys.exit(0)

    return run


def _one_uvicorn_worker(cmd) -> bool:
    if not isinstance(cmd, list) or cmd[1:3] != ["-m", "uvicorn"] or "--workers" not in cmd:
        return False
    return cmd[cmd.index("--workers") + 1] == "1"


def main() -> None:
    find_app = mlflow.server._find_app
    mlflow.server._find_app = lambda name: APP if name == APP_NAME else find_app(name)
    mlflow.server._exec_cmd = _run_here(mlflow.server._exec_cmd)
    cli()


if __name__ == "__main__":
    main()
