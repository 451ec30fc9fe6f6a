"""Human sign-off (`evaluate.gate.require_approval: true`) on a real `prefect server`.

On a copy of the flow tests' project (version 1 is `champion`), approval is turned on and
`dvc repro` alone registers a version that passed the gate without moving `champion` and says
so. The nightly flow, run as `python -m flows.nightly` against the server after a `serve` param
changed (the params fingerprint differs from the latest version's; no stage depends on it),
registers the next version (only `register` is stale: its report was removed), pauses with the
evaluation report as an artifact, and waits for an `Approval`: approve moves `champion`;
reject, and no answer within `approval_timeout_s` (15 s here), leave it where it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.e2e import flow_project, servers
from tests.e2e.test_nightly import Prefect

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_db")]
FLOW = "qwen-medical-nightly"


def _aliases(cfg) -> dict[str, str]:
    from pipeline.registry import versions as registry

    c = registry.client(cfg)
    return {a: str(v) for a, v in c.get_registered_model(cfg.register_.model_name).aliases.items()}


def _tag(cfg, version: int, key: str) -> str | None:
    from pipeline.registry import versions as registry

    mv = registry.client(cfg).get_model_version(cfg.register_.model_name, str(version))
    return mv.tags.get(key)


def _paused_run(api: Prefect, log: Path, proc: subprocess.Popen):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    found = []

    def paused() -> bool:
        assert proc.poll() is None, servers.tail(log)
        runs = api(
            "read_flow_runs",
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
        )
        found[:] = runs[:1]
        return bool(runs)

    flow_project.wait_for(paused, 600, "a paused nightly run", log)
    return found[0]


def _edit_params(root: Path, edit) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")


def _require_approval(params: dict) -> None:
    params["evaluate"]["gate"] |= {"require_approval": True, "approval_timeout_s": 15}


def _nightly(root: Path, tmp: Path, api_url: str, name: str) -> tuple[subprocess.Popen, Path]:
    (root / "reports" / "registration.json").unlink()  # register is stale; nothing else is

    def new_fingerprint(params: dict) -> None:  # a new params fingerprint: the nightly retrains
        params["serve"]["reload_interval_s"] += 1

    _edit_params(root, new_fingerprint)
    environ = flow_project.flow_env(root, tmp, PREFECT_API_URL=api_url)
    log = tmp / f"{name}.log"
    return flow_project.start("flows.nightly", root, environ, log), log


def test_approve_reject_and_timeout(flow_built, tmp_path):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = flow_project.copy(flow_built, tmp_path / "p")
    cfg = load_config(root / "params.yaml")
    assert _aliases(cfg) == {"champion": "1", "challenger": "1"}
    # `dvc repro` with require_approval (evaluate and register rerun): registered, gate passed,
    # champion not moved.
    _edit_params(root, _require_approval)
    servers.run([sys.executable, "-m", "dvc", "repro"], root, servers.env(PYTHONPATH=str(root)))
    registration = json.loads((root / "reports" / "registration.json").read_text())
    assert registration["version"] == 2 and registration["gate"]["promote"] is True
    assert registration["awaiting_approval"] is True
    assert registration["aliases"] == ["challenger"]
    assert _aliases(cfg) == {"champion": "1", "challenger": "2"}

    with servers.prefect_server(tmp_path / "prefect") as api_url:
        api = Prefect(api_url)

        def decide(name: str, answer: dict | None):
            proc, log = _nightly(root, tmp_path, api_url, name)
            try:
                run = _paused_run(api, log, proc)
                if answer is not None:
                    with temporary_settings({PREFECT_API_URL: api_url}):
                        resume_flow_run(run.id, run_input=answer)
                proc.wait(timeout=300)
            finally:
                servers.stop(proc)
            return api("read_flow_run", run.id), log.read_text(errors="replace")

        # 1. Approve: champion moves to the new version.
        run, text = decide("approve", {"approve": True, "reviewer": "dr-li", "comment": "ok"})
        assert run.state.is_completed(), text[-4000:]
        assert run.state.message == (
            "trained (params changed since version 2): registered version 3, promoted to "
            "champion, approved by dr-li: ok"
        )
        assert _aliases(cfg)["champion"] == "3"
        assert _tag(cfg, 3, "approval") == "approved by dr-li: ok"
        artifacts = api.artifacts(run.id)
        assert "# Evaluation report" in artifacts["approval-request"].data
        logs = api.logs(run.id)
        assert "stage register: started (changed outs: reports/registration.json deleted)" in logs
        assert "stage train: up to date (dvc status), skipped" in logs
        # register's own log line, forwarded into the run's log
        assert "version 3 passed the gate; champion NOT moved" in logs

        # 2. Reject: champion stays on version 3.
        run, text = decide("reject", {"approve": False, "reviewer": "dr-wang"})
        assert run.state.is_completed(), text[-4000:]
        assert run.state.message.endswith("registered version 4, not promoted: rejected by dr-wang")
        assert _aliases(cfg)["champion"] == "3"
        assert _tag(cfg, 4, "approval") == "rejected by dr-wang"

        # 3. No answer within approval_timeout_s: champion stays. The flow records "no decision"
        # and completes, unless the server marks the expired pause first ("never resumed").
        run, text = decide("timeout", None)
        assert (run.state.is_failed() and "never resumed" in run.state.message) or (
            run.state.is_completed() and run.state.message.endswith("no decision within 15 s")
        ), run.state
        assert _aliases(cfg)["champion"] == "3"
        assert _tag(cfg, 5, "approval") == "no decision within 15 s"
        assert (
            "not promoted: no decision within 15 s"
            in api.artifacts(run.id)["nightly-result"].description
        )
