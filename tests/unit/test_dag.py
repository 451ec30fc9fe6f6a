"""One DAG: dvc.yaml, the CLI and the Prefect flow run the same stages in the same order."""

import ast
from pathlib import Path

import pytest
import yaml

from pipeline import STAGE_MODULES, STAGES
from pipeline.errors import DataValidationError, RegistryUnavailable
from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _topological(stages: dict) -> list[str]:
    """dvc.yaml's stages in an order where every stage comes after those whose outs it reads."""
    outs = {
        name: [
            next(iter(o)) if isinstance(o, dict) else o
            for o in s.get("outs", []) + s.get("metrics", [])
        ]
        for name, s in stages.items()
    }

    def needs(name):
        return {
            other
            for other in stages
            for dep in stages[name]["deps"]
            for out in outs[other]
            if other != name
            and (dep.startswith(out.rstrip("/")) or out.startswith(dep.rstrip("/") + "/"))
        }

    order = []
    while len(order) < len(stages):
        ready = [n for n in stages if n not in order and needs(n) <= set(order)]
        assert ready, f"cycle among {set(stages) - set(order)}"
        order.append(ready[0])
    return order


def _stage_file(name: str) -> str:
    """pipeline/<concern>/<stage>.py"""
    return STAGE_MODULES[name].replace(".", "/") + ".py"


def test_dvc_stages_match_the_pipeline_in_order():
    assert list(DVC) == list(STAGES)
    assert _topological(DVC) == list(STAGES)
    for name, stage in DVC.items():
        assert stage["cmd"] == f"python -m pipeline {name}"
        assert _stage_file(name) in stage["deps"]
        assert (REPO / _stage_file(name)).exists()
        assert Path(_stage_file(name)).stem == name  # found by its stage's name


def test_declared_params_exist():
    for name, stage in DVC.items():
        for dotted in stage.get("params", []):
            node = PARAMS
            for key in dotted.split("."):
                assert key in node, f"{name}: params.yaml has no {dotted}"
                node = node[key]


def test_every_stage_has_a_run_function():
    for name in STAGES:
        tree = ast.parse((REPO / _stage_file(name)).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body), name


@pytest.fixture
def fake_stages(monkeypatch):
    """flows.stages with recording stand-ins for the stage tasks, outside a DVC project (so
    every stage runs) and without Prefect's run logger."""
    from flows import stages

    calls: list = []

    def stage_task(name):
        def run(params, dvc, force):
            calls.append((name, Path(params).name))
            return stages.StageRun(name, True, "no DVC project", 0.0, {"stage": name})

        return run

    monkeypatch.setattr(stages, "stage_task", stage_task)
    monkeypatch.setattr(stages, "get_run_logger", lambda: __import__("logging").getLogger("test"))
    return calls


def test_flow_runs_the_stage_functions_in_dvc_order(monkeypatch, fake_stages, project):
    from flows import full_pipeline as fp

    calls = fake_stages
    params = str(project / "params.yaml")
    monkeypatch.setattr(fp, "attach_report", lambda p: calls.append(("attach_report", p)))
    monkeypatch.setattr(
        fp, "attach_validation_report", lambda p: calls.append(("attach_validation", p))
    )
    runs = fp.full_pipeline.fn(params)
    attached = ("attach_report", "attach_validation")
    assert [c for c in calls if c[0] not in attached] == [(name, "params.yaml") for name in DVC]
    assert calls.index(("attach_validation", params)) == list(DVC).index("validate") + 1
    assert calls.index(("attach_report", params)) == list(DVC).index("evaluate") + 2
    # the stages' own results, as their processes reported them
    assert [(r.stage, r.ran, r.output) for r in runs] == [(n, True, {"stage": n}) for n in DVC]


def test_flow_attaches_the_validation_report_even_when_validation_fails(
    monkeypatch, fake_stages, project
):
    from flows import full_pipeline as fp
    from flows import stages

    calls = []

    def failing(name):
        def run(params, dvc, force):
            if name == "validate":
                raise DataValidationError("validation failed")
            calls.append(name)
            return stages.StageRun(name, True, "no DVC project", 0.0)

        return run

    monkeypatch.setattr(stages, "stage_task", failing)
    monkeypatch.setattr(fp, "attach_validation_report", lambda params: calls.append("attached"))
    with pytest.raises(DataValidationError, match="^stage validate: validation failed"):
        fp.full_pipeline.fn(str(project / "params.yaml"))
    assert calls == ["ingest", "attached"]  # nothing after validate ran


def test_flows_never_import_torch():
    for path in Path(REPO / "flows").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m.split(".")[0] for m in names} & {"torch", "transformers", "peft"}, path


def test_default_dvc_remote_is_inside_the_project_and_ignored_by_git():
    import configparser
    import subprocess

    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    remote = config["core"]["remote"]
    [section] = [s for s in config.sections() if s.strip("'") == f'remote "{remote}"']
    url = config[section]["url"]
    target = (REPO / ".dvc" / url).resolve()
    assert target.parent == REPO
    ignored = subprocess.run(["git", "check-ignore", "-q", str(target / "x")], cwd=REPO)
    assert ignored.returncode == 0


def test_nightly_flow_runs_every_stage_in_dvc_order_and_attaches_artifacts(
    monkeypatch, fake_stages, project
):
    from flows import nightly

    calls = fake_stages
    monkeypatch.setattr(nightly, "registry_snapshot", lambda p: {"latest": 0})
    monkeypatch.setattr(
        nightly,
        "AFTER_STAGE",
        {n: (lambda m: lambda p: calls.append(f"after {m}"))(n) for n in nightly.AFTER_STAGE},
    )
    runs = nightly.run_stages(str(project / "params.yaml"))
    assert [r for r in runs if r.stage == "register"][0].output == {"stage": "register"}
    names = [c if isinstance(c, str) else c[0] for c in calls]
    assert [n for n in names if not n.startswith("after ")] == list(DVC)
    assert names.index("after validate") == names.index("validate") + 1
    assert names.index("after evaluate") == names.index("evaluate") + 1


def test_nightly_undoes_a_failed_registration(monkeypatch, fake_stages, project):
    from flows import nightly, stages

    undone = []

    def stage(name):
        def run(p, dvc, force):
            if name == "register":
                raise RegistryUnavailable("registry went away")
            return stages.StageRun(name, True, "no DVC project", 0.0)

        return run

    monkeypatch.setattr(stages, "stage_task", stage)
    monkeypatch.setattr(nightly, "registry_snapshot", lambda p: {"latest": 3})
    monkeypatch.setattr(nightly, "undo_registration", lambda p, before: undone.append(before))
    monkeypatch.setattr(nightly, "AFTER_STAGE", {})
    with pytest.raises(RegistryUnavailable, match="^stage register: registry went away"):
        nightly.run_stages(str(project / "params.yaml"))
    assert undone == [{"latest": 3}]


def test_nightly_retries_only_transient_work():
    from flows import nightly, stages

    for t in (nightly.sync_data, nightly.latest_registered, nightly.registry_snapshot):
        assert t.retries == 3 and t.retry_condition_fn is nightly._transient
    assert nightly.record_approval.retries == 3
    assert stages.stage_task("train").retries == 0


def test_prefect_yaml_deploys_the_nightly_flow():
    import importlib

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [deployment] = spec["deployments"]
    path, func = deployment["entrypoint"].split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, func)
    assert flow.name == "qwen-medical-nightly"
    assert set(deployment["parameters"]) <= set(flow.parameters.properties)
    assert deployment["schedules"] == [
        {"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "active": True}
    ]
    assert deployment["concurrency_limit"]["limit"] == 1
    makefile = (REPO / "Makefile").read_text()
    assert f"WORK_POOL ?= {deployment['work_pool']['name']}" in makefile
    assert f"--name {deployment['name']}" in makefile
    assert f"TRAINING_LIMIT ?= {nightly_limit()}" in makefile
    assert "HOST ?= 127.0.0.1" in makefile


def nightly_limit() -> str:
    from flows.nightly import TRAINING_LIMIT

    return TRAINING_LIMIT
