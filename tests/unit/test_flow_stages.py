"""The flows' stage loop takes DVC's decisions: on a real (small, model-free) DVC project with
the pipeline's stage names, the loop runs exactly the stages `dvc repro` runs, records them in
dvc.lock, and runs nothing on an up-to-date project. Also: the stage's own log lines and
progress bars reach the Prefect run log."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import STAGES
from tests.conftest import write_params

# Each stand-in stage reads the previous stage's output and one params section and writes
# out/<stage>.txt; evaluate ignores `report_samples`, so changing it leaves evaluate's output
# bytes as they were and DVC does not rerun register.
SECTION = {
    "ingest": "ingest",
    "validate": "validate",
    "split": "split",
    "base": "tiny",
    "preprocess": "preprocess",
    "train": "train",
    "align": "align",
    "evaluate": "evaluate",
    "register": "register",
}
STAGE_SCRIPT = """
import sys, yaml
from pathlib import Path
name, section, dep = sys.argv[1:4]
params = yaml.safe_load(Path("params.yaml").read_text())[section]
if name == "evaluate":
    params.pop("report_samples")
text = Path(dep).read_text() + f"{name} {sorted(params.items())!r}\\n"
Path("out").mkdir(exist_ok=True)
Path("out", name + ".txt").write_text(text)
"""


def _dvc(root: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _cmd(name: str, index: int) -> list[str]:
    dep = "data/in.txt" if index == 0 else f"out/{STAGES[index - 1]}.txt"
    return [sys.executable, "stage.py", name, SECTION[name], dep]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The stand-in project, built once by `dvc repro`."""
    root = tmp_path_factory.mktemp("stand-in") / "p"
    (root / "data").mkdir(parents=True)
    (root / "data" / "in.txt").write_text("raw\n")
    (root / "stage.py").write_text(STAGE_SCRIPT)
    write_params(root, {})
    stages = {
        name: {
            "cmd": " ".join(_cmd(name, i)),
            "deps": ["stage.py", _cmd(name, i)[-1]],
            "params": [SECTION[name]],
            "outs": [f"out/{name}.txt"],
        }
        for i, name in enumerate(STAGES)
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    _dvc(root, "repro")
    return root


@pytest.fixture
def dvc_project(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built project per test (DVC keeps only relative paths)."""
    return Path(shutil.copytree(built, tmp_path / "p", symlinks=True))


@pytest.fixture
def loop(monkeypatch):
    """flows.stages with Prefect's task and run logger out of the way; the stage functions run
    the stand-in stages in-process order and are counted."""
    from flows import stages

    called: list[str] = []

    def function(name):
        def run(cfg):
            called.append(name)
            index = STAGES.index(name)
            subprocess.run(_cmd(name, index), cwd=cfg.root, check=True)
            return {"stage": name}

        return run

    monkeypatch.setattr(stages, "stage_function", function)
    monkeypatch.setattr(stages, "task", lambda fn, **kw: fn)
    monkeypatch.setattr(stages, "get_run_logger", lambda: logging.getLogger("test"))
    stages.called = called
    return stages


def _set_param(root: Path, dotted: str, value) -> None:
    tree = yaml.safe_load((root / "params.yaml").read_text())
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True))


def _repro_runs(root: Path) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", _dvc(root, "repro"))


def test_up_to_date_project_runs_no_stage(dvc_project, loop):
    lock = (dvc_project / "dvc.lock").read_bytes()
    runs = loop.run_stages(str(dvc_project / "params.yaml"))
    assert loop.called == []
    assert [(r.stage, r.ran, r.reason) for r in runs] == [(s, False, "up to date") for s in STAGES]
    assert (dvc_project / "dvc.lock").read_bytes() == lock


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("train.lr", 0.5, ["train", "align", "evaluate", "register"]),  # new outputs all the way
        ("evaluate.report_samples", 3, ["evaluate"]),  # same output bytes: register stays
    ],
)
def test_a_changed_param_runs_what_dvc_repro_runs(
    dvc_project, loop, tmp_path, dotted, value, expected
):
    _set_param(dvc_project, dotted, value)
    status = _dvc(dvc_project, "status")
    assert status.startswith(f"{expected[0]}:"), status
    twin = tmp_path / "twin"
    shutil.copytree(dvc_project, twin, symlinks=True)

    runs = loop.run_stages(str(dvc_project / "params.yaml"))

    assert loop.called == expected == _repro_runs(twin)
    assert [r.stage for r in runs if r.ran] == expected
    first = next(r for r in runs if r.ran)
    assert first.reason == f"changed deps: params.yaml ({SECTION[expected[0]]} modified)"
    assert first.result == {"stage": expected[0]}  # the stage's own result, as is
    assert "up to date" in _dvc(dvc_project, "status")  # each stage recorded in dvc.lock
    assert (dvc_project / "dvc.lock").read_text() == (twin / "dvc.lock").read_text()


def test_a_change_undone_is_restored_from_the_run_cache_as_dvc_repro_does(
    dvc_project, loop, tmp_path
):
    original = yaml.safe_load((dvc_project / "params.yaml").read_text())["train"]["lr"]
    _set_param(dvc_project, "train.lr", 0.5)
    loop.run_stages(str(dvc_project / "params.yaml"))
    _set_param(dvc_project, "train.lr", original)  # back: dvc status lists train again
    assert _dvc(dvc_project, "status").startswith("train:")
    twin = tmp_path / "twin"
    shutil.copytree(dvc_project, twin, symlinks=True)
    loop.called.clear()

    runs = loop.run_stages(str(dvc_project / "params.yaml"))

    assert loop.called == [] == _repro_runs(twin)  # outputs come back from .dvc/cache/runs
    restored = [r.stage for r in runs if r.reason.startswith("restored from run-cache")]
    assert restored == ["train", "align", "evaluate", "register"]
    assert "up to date" in _dvc(dvc_project, "status")
    assert (dvc_project / "dvc.lock").read_text() == (twin / "dvc.lock").read_text()


def test_force_runs_every_stage(dvc_project, loop):
    loop.run_stages(str(dvc_project / "params.yaml"), force=True)
    assert loop.called == list(STAGES)
    assert "up to date" in _dvc(dvc_project, "status")


def test_a_params_file_other_than_the_projects_is_refused(dvc_project, loop):
    from pipeline.errors import ConfigError

    other = dvc_project / "other.yaml"
    shutil.copy(dvc_project / "params.yaml", other)
    with pytest.raises(ConfigError, match="other.yaml: in a DVC project"):
        loop.run_stages(str(other))
    assert loop.called == []


def test_stage_logs_and_progress_bars_reach_the_run_logger(capsys):
    from tqdm import tqdm

    from flows.stagelog import stage_logs

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    run_logger = logging.getLogger("test.run")
    run_logger.addHandler(Collect())
    run_logger.setLevel(logging.INFO)
    run_logger.propagate = False
    with stage_logs(run_logger, every_s=3600):
        logging.getLogger("pipeline.training.base").info("base: building tiny-qwen")
        logging.getLogger("pipeline.training.base").debug("not shown")
        for _ in tqdm(range(50), desc="pretrain tiny-qwen", unit="step", mininterval=0):
            pass
    assert records[0] == "base: building tiny-qwen"
    bars = records[1:]
    # the first status line and the finished one; the 49 in between are throttled
    assert len(bars) == 2, bars
    assert bars[0].startswith("pretrain tiny-qwen: 0% 0/50 ")
    assert bars[1].startswith("pretrain tiny-qwen: 100% 50/50 ")
    assert "100%|" in capsys.readouterr().err  # the terminal still gets the bar itself
    assert logging.getLogger("pipeline").propagate  # restored
