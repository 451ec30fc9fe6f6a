"""MLflow's basic-auth app plus one rule of this project: moving a protected alias (`champion`)
needs MANAGE on the registered model (or an admin).

MLflow's own permissions are per model: EDIT lets an account both register versions and set
any alias. A team wants the training account to register versions and move `challenger`, and
only reviewers to promote. `python -m team.mlflow_server` serves this factory in place of
`mlflow.server.auth:create_app`; everything else is MLflow's."""

from __future__ import annotations

import json

PROTECTED_ALIASES = frozenset({"champion"})
ALIAS_PATHS = ("/registered-models/alias",)


def _alias_request() -> tuple[str, str] | None:
    """(model name, alias) when this request sets or deletes an alias, else None."""
    from flask import request

    if request.method not in ("POST", "DELETE") or not request.path.endswith(ALIAS_PATHS):
        return None
    if request.method == "POST":
        body = request.get_json(silent=True) or {}
    else:
        body = request.args.to_dict() or (request.get_json(silent=True) or {})
    return str(body.get("name", "")), str(body.get("alias", ""))


def _refuse_protected_alias():
    """Flask before-request hook, run after MLflow's authentication and permission check."""
    from flask import Response, request
    from mlflow.server import auth

    target = _alias_request()
    if target is None or target[1] not in PROTECTED_ALIASES:
        return None
    if request.authorization is None:
        return None  # MLflow's own hook already answered 401
    username = request.authorization.username
    if auth.store.get_user(username).is_admin:
        return None
    if auth._get_permission_from_registered_model_name().can_manage:
        return None
    body = {
        "error_code": "PERMISSION_DENIED",
        "message": f"Permission denied: moving alias '{target[1]}' of model '{target[0]}' "
        f"needs MANAGE on the model; user '{username}' lacks it.",
    }
    return Response(json.dumps(body), status=403, mimetype="application/json")


def create_app():
    """MLflow's basic-auth app (FastAPI under uvicorn) with the protected-alias rule."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth_app

    served = basic_auth_app(flask_app)
    flask_app.before_request(_refuse_protected_alias)  # after MLflow's own hook
    return served
