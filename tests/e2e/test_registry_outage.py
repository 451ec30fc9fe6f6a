"""A registry that cannot answer is not a registry without a champion (issue 17).

A real `mlflow server` holds a registered champion; `python -m pipeline evaluate` runs as a
process against it through tests/e2e/flaky_proxy.py, which fails ONLY the alias lookup (a 503,
or a connection closed without an answer) and forwards every other request. The stage must
exit with RegistryError's code and one line naming the server, before any answer is generated
and without a gate decision (reports/gate.json); before the fix it decided "without a champion".
A champion alias that does not exist (a registered model without one, or no model at all) still
means "no champion": the gate decides without it. Nothing listening at all
(`http://127.0.0.1:9`) fails the same way, naming that server.

MLflow's client retries a refused connection or a 503 seven times with back-off (about 4 min
a request); the runs here set MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 to fail at the first answer.
"""

from __future__ import annotations

import json
import sys

import pytest

from pipeline.errors import RegistryError
from tests.conftest import PERMISSIVE_GATE, REPO, TINY_OVERRIDES, TRAIN_ROWS, read_rows
from tests.e2e import servers

pytestmark = pytest.mark.slow
ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
OVERRIDES = {**TINY_OVERRIDES, **PERMISSIVE_GATE, "evaluate.max_samples": 2}


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def project(tmp_path_factory, prepared, mlflow_url):
    """A trained project whose version 1 is `champion` on the server; no reports/gate.json (the
    one that promoted version 1 is kept as reports/gate-without-champion.json)."""
    from pipeline.evaluation import evaluate
    from pipeline.registry import register
    from pipeline.training import train

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    try:
        cfg = prepared(tmp_path_factory.mktemp("outage") / "p", rows, OVERRIDES)
        train.run(cfg)
        evaluate.run(cfg)
        assert "champion" in register.run(cfg).aliases
    finally:
        mp.undo()
    gate = cfg.paths.reports / "gate.json"  # decided when there was no champion yet
    gate.rename(gate.with_name("gate-without-champion.json"))
    return cfg


@pytest.fixture
def flaky_proxy(tmp_path, mlflow_url):
    """Start the proxy in front of the server: `start(mode)` -> (url, log path)."""
    import contextlib

    stack = contextlib.ExitStack()

    def start(mode: str):
        port, log = servers.free_port(), tmp_path / f"proxy-{mode}.log"
        cmd = [sys.executable, "-m", "tests.e2e.flaky_proxy", "--upstream", mlflow_url]
        cmd += ["--port", str(port), "--fail-path", ALIAS_PATH, "--mode", mode]
        url = f"http://127.0.0.1:{port}"
        stack.enter_context(servers.server(cmd, f"{url}/health", REPO, servers.env(), log, 30))
        return url, log

    with stack:
        yield start


def _evaluate(cfg, tracking_uri: str, *args: str):
    import subprocess

    environ = servers.env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    cmd = [sys.executable, "-m", "pipeline", *args, "evaluate"]  # -S goes before the stage
    return subprocess.run(
        cmd, cwd=cfg.root, env=environ, capture_output=True, text=True, timeout=600
    )


def _assert_failed_naming(out, server: str, cfg) -> str:
    """Exit code of RegistryError, one `error:` line naming `server`, no traceback, nothing
    generated and no gate decision written; the error line."""
    assert out.returncode == RegistryError.exit_code, (out.returncode, out.stderr[-3000:])
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert server in errors[0] and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "evaluate: base answers" not in out.stderr  # failed before any generation
    assert not (cfg.paths.reports / "gate.json").exists()
    return errors[0]


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_alias_lookup_failure_stops_evaluate_before_the_gate(project, flaky_proxy, mode):
    url, log = flaky_proxy(mode)
    out = _evaluate(project, url)
    line = _assert_failed_naming(out, url, project)
    assert "alias 'champion'" in line, line
    requests = servers.tail(log).splitlines()
    # Only the alias lookup failed: the requests before it reached the real server.
    assert f"GET {ALIAS_PATH}?name=qwen-medical-lora&alias=champion -> " in "\n".join(requests)
    failed = [r for r in requests if r.endswith(("-> 503", "-> dropped"))]
    assert failed and all(ALIAS_PATH in r for r in failed), requests
    assert any("experiments/get-by-name" in r and r.endswith("-> 200") for r in requests)


@pytest.mark.parametrize("registered", [True, False], ids=["model-without-alias", "no-model"])
def test_missing_champion_alias_still_means_no_champion(project, mlflow_url, registered):
    from mlflow import MlflowClient

    name = f"no-champion-{registered}".lower()
    if registered:  # the model exists, no version holds `champion`
        MlflowClient(mlflow_url, mlflow_url).create_registered_model(name)
    out = _evaluate(project, mlflow_url, "-S", f"register.model_name={name}")
    assert out.returncode == 0, out.stderr[-3000:]
    gate = json.loads((project.paths.reports / "gate.json").read_text())
    assert gate["champion_version"] is None
    assert "evaluate: champion answers" not in out.stderr
    (project.paths.reports / "gate.json").unlink()


def test_no_server_listening_is_one_line_naming_it(project):
    out = _evaluate(project, "http://127.0.0.1:9")
    _assert_failed_naming(out, "http://127.0.0.1:9", project)


def test_register_does_not_promote_over_a_champion_the_gate_did_not_see(project, mlflow_url):
    """A gate decided without a champion (or against another one) never moves `champion`."""
    import shutil

    from mlflow import MlflowClient
    from pipeline.registry import register

    reports = project.paths.reports
    shutil.copyfile(reports / "gate-without-champion.json", reports / "gate.json")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    try:
        result = register.run(project)
    finally:
        mp.undo()
        (reports / "gate.json").unlink()
    assert result.gate.decision.promote and "champion" not in result.aliases, result
    client = MlflowClient(mlflow_url, mlflow_url)
    name = project.register_.model_name
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    tag = client.get_model_version(name, str(result.version)).tags["gate.stale_champion"]
    assert tag.startswith("the registry has version 1 as champion but evaluate compared against no")
