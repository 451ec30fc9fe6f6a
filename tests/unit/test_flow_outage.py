"""A flow run whose orchestrator or registry went away under it (issue 17: PostgreSQL
restarted under the team's Prefect and MLflow servers mid-run; tests/team/test_2_faults.py
has the real thing). What the user sees names the stage that was interrupted, and a failure
while reporting the failure does not hide it. Prefect's task and run logger are stand-ins."""

from __future__ import annotations

import logging

import pytest
import yaml

from pipeline.errors import DataValidationError, PipelineError, RegistryError
from tests.conftest import REPO


class ServerError(Exception):
    """What Prefect's client raises on a 500 (PrefectHTTPStatusError): not a pipeline error."""


@pytest.fixture
def stages(monkeypatch):
    from flows import stages

    monkeypatch.setattr(stages, "get_run_logger", lambda: logging.getLogger("test"))
    return stages


def _failing(stages, monkeypatch, exc: BaseException) -> None:
    def stage_task(name):
        def run(*args):
            raise exc

        return run

    monkeypatch.setattr(stages, "stage_task", stage_task)


def test_an_interrupted_stage_is_named_in_the_error(stages, monkeypatch):
    _failing(stages, monkeypatch, ServerError("Server error '500 Internal Server Error'"))
    with pytest.raises(PipelineError) as failed:
        stages._run_one("train", "params.yaml", True, False, None)
    message = str(failed.value)
    assert message.startswith("stage train: interrupted after "), message
    assert "ServerError: Server error '500 Internal Server Error'" in message, message
    assert "rerun" in message and failed.value.transient
    assert isinstance(failed.value.__cause__, ServerError)


def test_a_stages_typed_error_keeps_its_type_and_gains_the_stage(stages, monkeypatch):
    _failing(stages, monkeypatch, RegistryError("MLflow: API request to http://h failed"))
    with pytest.raises(RegistryError, match=r"^stage train: MLflow: API request to http://h"):
        stages._run_one("train", "params.yaml", True, False, None)
    _failing(stages, monkeypatch, DataValidationError("validation failed: a.jsonl:3"))
    with pytest.raises(DataValidationError, match=r"^stage validate: validation failed"):
        stages._run_one("validate", "params.yaml", True, False, None)
    named = stages.results.StageFailed("stage train: `dvc repro train` exited with 1")
    _failing(stages, monkeypatch, named)
    with pytest.raises(stages.results.StageFailed, match=r"^stage train: `dvc repro"):
        stages._run_one("train", "params.yaml", True, False, None)  # named once, not twice


def test_a_hook_that_fails_after_the_stage_does_not_hide_the_stages_error(stages, monkeypatch):
    _failing(stages, monkeypatch, RegistryError("store down"))

    def undo(params_path):
        raise ServerError("the server is down too")

    with pytest.raises(RegistryError, match=r"^stage register: store down"):
        stages._run_one("register", "params.yaml", True, False, undo)


def test_interrupts_and_cancellations_are_not_wrapped(stages, monkeypatch):
    from prefect.exceptions import CancelledRun

    from flows import shutdown

    announced = []  # the real `stopping` arms a watchdog that would end this process in 10 s
    monkeypatch.setattr(shutdown, "stopping", lambda what, signum: announced.append((what, signum)))
    for exc in (KeyboardInterrupt(), CancelledRun("cancelled by a user")):
        _failing(stages, monkeypatch, exc)
        with pytest.raises(type(exc)):
            stages._run_one("train", "params.yaml", True, False, None)
    assert announced == [("stage train", 2)]  # Ctrl-C announced once; a cancellation is not a stop


def test_the_nightly_keeps_the_stages_error_when_its_outcome_cannot_be_recorded(monkeypatch):
    import contextlib

    from flows import nightly

    stage_error = RegistryError("stage train: MLflow: API request to http://h failed")

    def run_stages(params, force):
        raise stage_error

    def outcome(message, details):
        raise ServerError("Server error '500 Internal Server Error' for url '.../artifacts/'")

    monkeypatch.setattr(nightly, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(nightly, "sync_data", lambda params, mode: "data sync: off")
    monkeypatch.setattr(nightly, "fingerprints", lambda params: {"data_sha256": "d"})
    monkeypatch.setattr(nightly, "latest_registered", lambda params: None)
    monkeypatch.setattr(nightly, "concurrency", lambda *a, **kw: contextlib.nullcontext())
    monkeypatch.setattr(nightly, "run_stages", run_stages)
    monkeypatch.setattr(nightly, "_outcome", outcome)
    with pytest.raises(RegistryError) as failed:
        nightly.nightly_retrain.fn("params.yaml")
    assert failed.value is stage_error


def test_the_deployments_runs_retry_a_server_error():
    """Prefect's server answers 500 (not 503) while its database refuses connections (a
    PostgreSQL restart): the deployment's runs retry it like a 503, as do the team's clients
    (.team/env), instead of losing log lines, crashing on a state change or leaving the run
    Running for good."""
    from team.stack import Stack

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [nightly] = [d for d in spec["deployments"] if d["name"] == "nightly-retrain"]
    codes = nightly["work_pool"]["job_variables"]["env"]["PREFECT_CLIENT_RETRY_EXTRA_CODES"]
    assert "500" in str(codes).split(",")
    secrets = dict.fromkeys(("trainer", "prefect", "s3_key", "s3_secret"), "x")
    env = Stack(REPO / ".team-test", REPO).env(secrets, _PORTS)
    assert "500" in env["PREFECT_CLIENT_RETRY_EXTRA_CODES"].split(",")


_PORTS = {"mlflow": 1, "prefect": 2, "s3": 3}
