"""`mlflow server --app-name basic-auth` serving `team.mlflow_app:create_app` (MLflow's
basic-auth app plus the protected-alias rule).

MLflow finds an app by its `mlflow.app` entry point and its CLI accepts only the names those
declare; this launcher points `basic-auth` at the factory in this folder (no package re-install
needed; MLflow's own admin bootstrap still runs), then runs MLflow's CLI. Usage as
`mlflow server`: `python -m team.mlflow_server server --app-name basic-auth ...`."""

from __future__ import annotations

import mlflow.server
from mlflow.cli import cli

APP_NAME = "basic-auth"
APP = "team.mlflow_app:create_app"


def main() -> None:
    find_app = mlflow.server._find_app
    mlflow.server._find_app = lambda name: APP if name == APP_NAME else find_app(name)
    cli()


if __name__ == "__main__":
    main()
