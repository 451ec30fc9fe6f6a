"""Only "no such alias / model" reads as nothing registered; a registry that cannot answer is a
RegistryUnavailable naming the server (issue 17). Real MLflow errors: a sqlite store for the
missing alias and model, a loopback port where nothing listens for the outage."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from mlflow import MlflowClient
from pipeline.config import load_config
from pipeline.errors import RegistryError, RegistryUnavailable
from pipeline.registry import tracking
from pipeline.registry import versions as registry

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(uri, uri)


@pytest.fixture
def nowhere(monkeypatch):
    """A client of a registry nobody answers for, failing at once (no client-side retries)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(mlflow, "get_registry_uri", lambda: NOWHERE)
    return MlflowClient(NOWHERE, NOWHERE)


def test_missing_model_or_alias_means_no_champion(store):
    assert registry.champion_version(store, "never-registered") is None
    store.create_registered_model("m")
    assert registry.champion_version(store, "m") is None  # a model, no alias
    assert registry.alias_version(store, "m", "challenger") is None


def test_unreachable_registry_is_not_no_champion(nowhere):
    with pytest.raises(RegistryUnavailable) as info:
        registry.champion_version(nowhere, "m")
    message = str(info.value)
    assert NOWHERE in message and "Connection refused" in message and "alias 'champion'" in message
    assert "\n" not in message and isinstance(info.value, RegistryError)
    assert info.value.exit_code == RegistryError.exit_code and info.value.transient


def test_unreachable_registry_is_not_no_version(nowhere):
    with pytest.raises(RegistryUnavailable, match="127.0.0.1:9"):
        registry._version(nowhere, "m", "3")


def _error(code: str, message: str) -> MlflowException:
    from mlflow.protos.databricks_pb2 import ErrorCode

    exc = MlflowException(message, error_code=ErrorCode.Value(code))
    assert exc.error_code == code
    return exc


@pytest.mark.parametrize(
    ("exc", "missing"),
    [
        (_error("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=m not found"), True),
        (_error("INVALID_PARAMETER_VALUE", "Registered model alias champion not found."), True),
        (_error("INVALID_PARAMETER_VALUE", "Invalid alias name: 'v1'"), False),
        (_error("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'name'"), False),
        (_error("TEMPORARILY_UNAVAILABLE", "failed with error code 503 != 200"), False),
        (_error("INTERNAL_ERROR", "API request failed with exception Connection refused"), False),
        (_error("PERMISSION_DENIED", "Permission denied"), False),
        (_error("UNAUTHENTICATED", "You are not authenticated"), False),
        (_error("ENDPOINT_NOT_FOUND", "failed with error code 404 != 200: <html>"), False),
    ],
)
def test_not_found_is_only_what_the_registry_says_is_missing(exc, missing):
    assert tracking.is_not_found(exc) is missing


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error "
            "code 503 != 200. Response body: 'Service Unavailable'",
            "HTTP 503",
        ),
        (
            "API request to http://h/api failed with exception HTTPConnectionPool(host='h', "
            "port=5000): Max retries exceeded with url: /api (Caused by ResponseError('too many "
            "502 error responses'))",
            "HTTP 502",
        ),
        (
            "API request to http://h/api failed with timeout exception Read timed out.",
            "timed out",
        ),
    ],
)
def test_the_reason_is_short(message, reason):
    err = tracking.unavailable(_error("INTERNAL_ERROR", message), "reading x", "http://h:5000")
    assert f"({reason})" in str(err) and "http://h:5000" in str(err)


def test_credentials_in_the_uri_are_never_shown():
    uri = "https://trainer:s3cret@mlflow.example:5000/path"
    assert tracking.shown_uri(uri) == "https://mlflow.example:5000/path"
    err = tracking.unavailable(_error("INTERNAL_ERROR", "boom"), "reading x", uri)
    assert "s3cret" not in str(err) and "trainer" not in str(err)


def test_resume_run_starts_a_new_run_only_when_the_old_one_is_gone(project, monkeypatch):
    import mlflow

    cfg = load_config(project / "params.yaml")
    cfg.paths.adapter_dir.mkdir(parents=True)
    tracking.save_run_id(cfg.paths.adapter_dir, "0123456789abcdef0123456789abcdef")
    with tracking.resume_run(cfg) as run:  # this store never had that run: a new one
        assert run.info.run_id != "0123456789abcdef0123456789abcdef"

    def unavailable(run_id):
        raise _error("TEMPORARILY_UNAVAILABLE", "failed with error code 503 != 200")

    monkeypatch.setattr(mlflow, "get_run", unavailable)
    with pytest.raises(RegistryUnavailable, match="reopening run 0123456789abcdef"):
        tracking.resume_run(cfg)


def test_the_nightly_retries_an_outage_not_a_user_error():
    from flows import nightly

    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self):
            raise self.exc

    assert nightly._transient(None, None, State(RegistryUnavailable("down")))
    assert not nightly._transient(None, None, State(RegistryError("no version 3")))


def test_register_moves_champion_only_over_the_one_the_gate_saw(store):
    from pipeline.registry.register import stale_champion

    store.create_registered_model("m")
    store.create_model_version("m", "file:///nowhere/model")
    assert stale_champion(store, "m", {"champion_version": None}) is None  # still none
    store.set_registered_model_alias("m", "champion", "1")
    assert stale_champion(store, "m", {"champion_version": "1"}) is None
    reason = stale_champion(store, "m", {"champion_version": None})  # decided without it
    assert reason and "version 1 as champion" in reason and "no champion" in reason
    assert "version 7" in stale_champion(store, "m", {"champion_version": "7"})
    assert stale_champion(store, "m", {}) is None  # a gate.json from before the check


def test_register_reads_the_champion_or_fails(nowhere):
    from pipeline.registry.register import stale_champion

    with pytest.raises(RegistryUnavailable, match="127.0.0.1:9"):
        stale_champion(nowhere, "m", {"champion_version": None})


def _store_errors():
    """What the layers below MLflow raise when the artifact store does not answer: boto (a
    client that reads S3 itself), requests (HTTP below MLflow: the proxied artifact API,
    presigned URLs)."""
    import botocore.exceptions
    import requests

    down = "http://127.0.0.1:9/mlflow/artifacts/1/models/m-1/artifacts/MLmodel"
    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
        "/mlflow/artifacts/1/models/m-1/artifacts/MLmodel?X-Amz-Signature=s3cr3t (Caused by "
        "NewConnectionError('Failed to establish a new connection: [Errno 111] Connection "
        "refused'))",
        request=requests.Request("GET", down + "?X-Amz-Signature=s3cr3t").prepare(),
    )
    return [
        botocore.exceptions.EndpointConnectionError(endpoint_url=down),
        refused,
    ]


@pytest.mark.parametrize("command", [["chat", "感冒有什么症状？"], ["export", "1", "--out", "x"]])
@pytest.mark.parametrize("error", _store_errors(), ids=["boto", "requests"])
def test_artifact_store_down_is_one_line_exit_5(project, monkeypatch, capsys, command, error):
    """Issue 17: the object store down while `chat` (or `export`) downloads a version: one
    line naming the store, exit 5 (RegistryUnavailable), not an internal error (exit 70)."""
    import mlflow
    from pipeline.__main__ import main
    from pipeline.registry import export

    def download_artifacts(**kwargs):
        raise error

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download_artifacts)
    monkeypatch.setattr(export, "_require_version", lambda cfg, version: None)
    monkeypatch.chdir(project)
    monkeypatch.delenv("PIPELINE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as done:
        main(["-p", str(project / "params.yaml"), *command])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert done.value.code == RegistryError.exit_code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "artifact store at http://127.0.0.1:9" in lines[0], lines[0]
    assert "s3cr3t" not in err  # a presigned URL's signature is never shown
