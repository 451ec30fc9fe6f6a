"""Nightly retraining on a team's servers: a real Prefect server, work pool, deployment and
worker, and a real MLflow tracking server; one DAG for the flow and `dvc repro`.

A tiny copy of the project (the flow tests' rows and params, tests/e2e/flow_project.py) is
deployed from its prefect.yaml onto `prefect server start` with the commands of `make deploy`,
MLFLOW_TRACKING_URI pointing at `mlflow server` (both on free loopback ports, their state in
tmp); a process worker runs the triggered flow runs.
1. No version yet: the flow runs every stage from scratch, registers version 1 on the MLflow
   server (nothing in the project's local sqlite default), attaches the validation summary and
   the evaluation report, and leaves `dvc status` clean with the same dvc.lock `dvc repro` left
   in the flow tests' project (stages, commands, deps, params; outputs where bit-identical).
2. Same data, params and code: skipped, no new version.
3. A broken conversation added: fails with the validation message, still no new version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.conftest import REPO
from tests.e2e import flow_project, servers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_db")]
DEPLOY = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]
POOL = DEPLOY["work_pool"]["name"]


class Prefect:
    """Sync client calls against the test's server (the test process has no profile for it)."""

    def __init__(self, api_url: str):
        self.api_url = api_url

    def __call__(self, method: str, *args, **kwargs):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            with get_client(sync_client=True) as client:
                return getattr(client, method)(*args, **kwargs)

    def trigger(self, deployment_name: str):
        deployment = self("read_deployment_by_name", deployment_name)
        return self("create_flow_run_from_deployment", deployment.id).id

    def wait(self, flow_run_id, timeout: float, worker_log: Path):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self("read_flow_run", flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(2)
        raise AssertionError(f"flow run not finished in {timeout} s\n{servers.tail(worker_log)}")

    def artifacts(self, flow_run_id) -> dict:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        found = self(
            "read_artifacts",
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
        )
        return {a.key: a for a in found}

    def logs(self, flow_run_id) -> str:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        found = self(
            "read_logs", log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        return "\n".join(log.message for log in found)[-6000:]


# Outputs holding an MLflow run id, timestamps or Data Docs renderings: their md5 differs from
# one execution to the next whatever ran them (two `dvc repro` runs differ the same way).
RUN_SPECIFIC = {
    "data/reports/validation/",  # GX Data Docs: run ids and times in the HTML and JSON
    # mlflow_run.json (the run id), adapter_config.json / README.md (the base's absolute path,
    # target_modules in set order); adapter_model.safetensors is compared below
    "models/adapter",
    "data/processed",  # state.json: datasets' random `_fingerprint`; the arrow data is compared
    "reports/train.json",  # wall-clock figures
    "reports/base.json",
    "reports/registration.json",  # run id
    "reports/metrics.json",  # generation timings
    "reports/eval_report.md",
    "reports/eval_report.html",
    "models/checkpoints",  # trainer state and run-specific files, not cached
}


def _lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _entries(stage: dict, kind: str) -> dict[str, str]:
    return {e["path"]: e.get("md5") for e in stage.get(kind, [])}


def _same_lock_as_dvc_repro(root: Path, repro_project: Path) -> None:
    by_repro, by_flow = _lock(repro_project), _lock(root)
    assert list(by_flow) == list(by_repro)
    differing = set()
    for name, expected in by_repro.items():
        got = by_flow[name]
        assert got["cmd"] == expected["cmd"], name
        assert got["params"] == expected["params"], name
        for kind in ("deps", "outs"):
            want, have = _entries(expected, kind), _entries(got, kind)
            assert set(have) == set(want), (name, kind)
            differing |= {p for p in want if have[p] != want[p]}
    # Code, data and every deterministic output (validated data, splits, the tiny base, the
    # tokenized data, the adapter weights inside models/adapter) hash the same; only files that
    # carry a run id or a clock differ.
    assert differing <= RUN_SPECIFIC, differing - RUN_SPECIFIC
    for path in ("data/raw", "data/validated/conversations.jsonl", "data/split", "models/base"):
        assert path not in differing
    for path in ["models/adapter/adapter_model.safetensors"] + [
        f.relative_to(root).as_posix() for f in (root / "data" / "processed").rglob("*.arrow")
    ]:
        assert (root / path).read_bytes() == (repro_project / path).read_bytes(), path


def test_nightly_deployment_trains_then_skips_then_fails_on_bad_data(tmp_path, flow_built):
    from mlflow import MlflowClient
    from pipeline.registry import fingerprint

    root = servers.dvc_project(tmp_path / "p", flow_project.ROWS, flow_project.OVERRIDES)
    cfg = load_config(root / "params.yaml")
    name = cfg.register_.model_name
    with (
        servers.mlflow_server(tmp_path / "mlflow-server") as mlflow_url,
        servers.prefect_server(tmp_path / "prefect") as api_url,
    ):
        mlflow = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)

        def versions() -> list:
            return mlflow.search_model_versions(f"name='{name}'")

        client_env = servers.env(
            PREFECT_API_URL=api_url,
            MLFLOW_TRACKING_URI=mlflow_url,
            PREFECT_HOME=str(tmp_path / "client-home"),
            PYTHONPATH=str(root),  # the worker's flow-run processes inherit it
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        )
        prefect = [str(servers.BIN / "prefect")]
        # What `make deploy` does.
        servers.run(prefect + ["work-pool", "create", POOL, "--type", "process"], root, client_env)
        limit = "qwen-medical-training"
        servers.run(
            prefect + ["global-concurrency-limit", "create", limit, "--limit", "1"],
            root,
            client_env,
        )
        servers.run(prefect + ["--no-prompt", "deploy", "--name", DEPLOY["name"]], root, client_env)
        # The server runs as `make mlflow-server` does: no job runner polling beside it.
        assert servers.job_runners(tmp_path / "mlflow-server") == []
        api = Prefect(api_url)
        deployment_name = f"qwen-medical-nightly/{DEPLOY['name']}"
        deployment = api("read_deployment_by_name", deployment_name)
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (
            "0 2 * * *",
            "Asia/Shanghai",
        )
        assert deployment.work_pool_name == POOL

        worker_log = tmp_path / "worker.log"
        worker = prefect + ["worker", "start", "--pool", POOL, "--type", "process"]
        with servers.process(worker, root, client_env, worker_log):
            # 1. No version yet: train, gate, register.
            first = api.wait(api.trigger(deployment_name), 900, worker_log)
            assert first.state.is_completed(), (
                first.state,
                api.logs(first.id),
                servers.tail(worker_log),
            )
            assert first.state.message.startswith(
                "trained (no registered version): registered version 1"
            )
            arts = api.artifacts(first.id)
            assert {"validation-summary", "evaluation-report", "nightly-result"} <= set(arts)
            assert "# Evaluation report" in arts["evaluation-report"].data
            assert arts["validation-summary"].type == "table"
            assert arts["validation-summary"].description.startswith("passed: 80 conversations")
            # On the MLflow server, with the run's params and artifacts; nothing went to the
            # embedded default (sqlite + artifacts under the project's mlflow/).
            [v1] = versions()
            assert v1.version == "1"
            assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
            assert v1.tags["lineage.data_sha256"] == fingerprint.data_sha256(cfg)
            run = mlflow.get_run(v1.run_id)
            assert run.data.params["train.lora.r"] == str(cfg.train.lora.r)
            assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # served by the server
            files = mlflow.list_artifacts(v1.run_id, "validation")
            assert [f.path for f in files] == ["validation/summary.json"]
            assert not (root / "mlflow").exists()
            status = servers.run([sys.executable, "-m", "dvc", "status"], root, servers.env())
            assert "up to date" in status  # the flow recorded every stage in dvc.lock
            _same_lock_as_dvc_repro(root, flow_built)

            # 2. Same data: skipped, nothing registered.
            second = api.wait(api.trigger(deployment_name), 300, worker_log)
            assert second.state.is_completed(), (second.state, api.logs(second.id))
            skipped = "skipped: data, params and code unchanged since version 1"
            assert second.state.message == skipped
            result = api.artifacts(second.id)["nightly-result"]
            assert result.description == skipped
            assert len(versions()) == 1

            # 3. A broken conversation: failed with the validation error, nothing registered.
            with (root / "data" / "raw" / "conversations.jsonl").open("a", encoding="utf-8") as f:
                bad = {"conversations": [{"role": "user", "content": "只有问题？"}]}
                f.write(json.dumps(bad, ensure_ascii=False) + "\n")
            third = api.wait(api.trigger(deployment_name), 300, worker_log)
            assert third.state.is_failed(), third.state
            assert "DataValidationError" in third.state.message, third.state.message
            arts = api.artifacts(third.id)
            assert "ends_with_assistant" in arts["nightly-result"].data
            assert arts["validation-summary"].description.startswith("FAILED")
            assert len(versions()) == 1
        gcl = api("read_global_concurrency_limit_by_name", limit)
        assert gcl.active_slots == 0  # released after each training, failed ones included
