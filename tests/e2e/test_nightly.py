"""Nightly retraining through a real Prefect server, work pool, deployment and worker.

A tiny copy of the project is deployed from its prefect.yaml onto `prefect server start` (free
loopback port, PREFECT_HOME in tmp) with the commands of `make deploy`; a process worker runs
the triggered flow runs. First run: trains, registers version 1, attaches the validation
summary and the evaluation report, leaves `dvc status` clean. Second run, same data, params and
code: skipped, no new version. Third run, a broken conversation added: fails with the
validation message, still no new version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.conftest import REPO, TINY_OVERRIDES, read_rows
from tests.e2e import servers

pytestmark = pytest.mark.slow
ROWS = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:80]
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


def _versions(cfg) -> list:
    import mlflow
    from pipeline.registry import tracking

    tracking.setup(cfg)
    return mlflow.MlflowClient().search_model_versions(f"name='{cfg.register_.model_name}'")


def test_nightly_deployment_trains_then_skips_then_fails_on_bad_data(tmp_path):
    root = servers.dvc_project(tmp_path / "p", ROWS, TINY_OVERRIDES)
    cfg = load_config(root / "params.yaml")
    with servers.prefect_server(tmp_path / "prefect") as api_url:
        client_env = servers.env(
            PREFECT_API_URL=api_url,
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
        api = Prefect(api_url)
        name = f"qwen-medical-nightly/{DEPLOY['name']}"
        deployment = api("read_deployment_by_name", name)
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
            first = api.wait(api.trigger(name), 900, worker_log)
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
            [v1] = _versions(cfg)
            from pipeline.registry import fingerprint

            assert v1.tags["lineage.data_sha256"] == fingerprint.data_sha256(cfg)
            status = servers.run([sys.executable, "-m", "dvc", "status"], root, servers.env())
            assert "up to date" in status  # the flow recorded every stage in dvc.lock

            # 2. Same data: skipped, nothing registered.
            second = api.wait(api.trigger(name), 300, worker_log)
            assert second.state.is_completed(), (second.state, api.logs(second.id))
            skipped = "skipped: data, params and code unchanged since version 1"
            assert second.state.message == skipped
            result = api.artifacts(second.id)["nightly-result"]
            assert result.description == skipped
            assert len(_versions(cfg)) == 1

            # 3. A broken conversation: failed with the validation error, nothing registered.
            with (root / "data" / "raw" / "conversations.jsonl").open("a", encoding="utf-8") as f:
                bad = {"conversations": [{"role": "user", "content": "只有问题？"}]}
                f.write(json.dumps(bad, ensure_ascii=False) + "\n")
            third = api.wait(api.trigger(name), 300, worker_log)
            assert third.state.is_failed(), third.state
            assert "DataValidationError" in third.state.message, third.state.message
            arts = api.artifacts(third.id)
            assert "ends_with_assistant" in arts["nightly-result"].data
            assert arts["validation-summary"].description.startswith("FAILED")
            assert len(_versions(cfg)) == 1
        gcl = api("read_global_concurrency_limit_by_name", limit)
        assert gcl.active_slots == 0  # released after each training, failed ones included
