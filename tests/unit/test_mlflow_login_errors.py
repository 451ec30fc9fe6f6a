"""A tracking server with logins (docs/team.md) refusing the user: one line naming who and
where, exit 5, never the password (MLflow's own 401 / 403 errors as it raises them)."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException, RestException

from pipeline.__main__ import _one_line
from pipeline.errors import RegistryError


@pytest.fixture
def login(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:s3cret@127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")


def test_wrong_password_names_the_user_and_server(login):
    exc = MlflowException(
        "API request to endpoint /api/2.0/mlflow/registered-models/search failed with error "
        "code 401 != 200. Response body: 'You are not authenticated.'"
    )
    code, line = _one_line(exc)
    assert code == RegistryError.exit_code
    assert line.startswith("MLflow: authentication failed for user trainer at http://127.0.0.1")
    assert "s3cret" not in line and "\n" not in line


def test_permission_denied_names_the_user(login):
    exc = RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
    code, line = _one_line(exc)
    assert code == RegistryError.exit_code
    assert line == "MLflow: user trainer may not do this at http://127.0.0.1:5000: " + (
        "PERMISSION_DENIED: Permission denied"
    )


def test_other_mlflow_errors_are_unchanged(login):
    code, line = _one_line(MlflowException("Registered model 'x' not found"))
    assert line == "MLflow: Registered model 'x' not found"
