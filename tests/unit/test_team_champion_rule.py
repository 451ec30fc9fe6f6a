"""The team stack's MLflow rule (team/mlflow_app.py): moving `champion` needs MANAGE on the
model or an admin; other aliases and other requests are left to MLflow's own permissions."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from flask import Flask

pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF (team extra)")

from mlflow.server import auth  # noqa: E402
from mlflow.server.auth.permissions import EDIT, MANAGE, READ  # noqa: E402

from team.mlflow_app import _refuse_protected_alias  # noqa: E402

APP = Flask("rule")
PATH = "/api/2.0/mlflow/registered-models/alias"


def _answer(monkeypatch, *, alias="champion", method="POST", admin=False, permission=EDIT):
    monkeypatch.setattr(auth.store, "get_user", lambda name: SimpleNamespace(is_admin=admin))
    monkeypatch.setattr(auth, "_get_permission_from_registered_model_name", lambda: permission)
    token = base64.b64encode(b"trainer:pw").decode()
    body = {"name": "qwen-medical-lora", "alias": alias, "version": "2"}
    kwargs = {"json": body} if method == "POST" else {"query_string": body}
    with APP.test_request_context(
        PATH, method=method, headers={"Authorization": f"Basic {token}"}, **kwargs
    ):
        return _refuse_protected_alias()


def test_edit_may_not_set_or_delete_champion(monkeypatch):
    for method in ("POST", "DELETE"):
        refused = _answer(monkeypatch, method=method)
        assert refused.status_code == 403
        assert b"PERMISSION_DENIED" in refused.data and b"MANAGE" in refused.data
        assert b"trainer" in refused.data


def test_manage_or_admin_may_move_champion_and_edit_may_move_challenger(monkeypatch):
    assert _answer(monkeypatch, permission=MANAGE) is None
    assert _answer(monkeypatch, admin=True, permission=READ) is None
    assert _answer(monkeypatch, alias="challenger") is None
