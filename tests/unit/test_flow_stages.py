"""The flows' stage loop runs each stage with `dvc repro` itself: on a real (small, model-free)
DVC project with the pipeline's stage names, the loop runs exactly the stages `dvc repro` runs,
leaves the same dvc.lock, runs nothing on an up-to-date project, forces every stage as
`dvc repro --force` does, and hands on each stage's result. Also: the stage's own log lines and
progress bars reach the Prefect run log, and flows/ uses no DVC internals."""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import STAGES
from tests.conftest import REPO, write_params

# Each stand-in stage reads the previous stage's output and one params section and writes
# out/<stage>.txt; evaluate ignores `report_samples`, so changing it leaves evaluate's output
# bytes as they were and DVC does not rerun register. Each appends its name to $CALLS and, as
# `python -m pipeline <stage>` does, writes its result to $PIPELINE_RESULT (register's in the
# shape of RegisterResult, which the nightly flow reads).
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
REGISTERED = {
    "model_name": "stand-in",
    "version": 7,
    "run_id": "r1",
    "aliases": ["challenger", "champion"],
    "awaiting_approval": False,
    # a GateRecord as the register stage's result carries it (reports/gate.json's shape)
    "gate": {
        "decision": {"promote": True, "rules": [], "warnings": []},
        "champion_version": None,
        "primary_set": "test",
    },
}
STAGE_SCRIPT = f"""
import json, os, sys, yaml
from pathlib import Path
name, section, dep = sys.argv[1:4]
params = yaml.safe_load(Path("params.yaml").read_text())[section]
if name == "evaluate":
    params.pop("report_samples")
text = Path(dep).read_text() + f"{{name}} {{sorted(params.items())!r}}\\n"
Path("out").mkdir(exist_ok=True)
Path("out", name + ".txt").write_text(text)
if os.environ.get("CALLS"):
    with open(os.environ["CALLS"], "a") as calls:
        calls.write(name + "\\n")
print(f"{{name}}: done", flush=True)
if os.environ.get("PIPELINE_RESULT"):
    result = {REGISTERED!r} if name == "register" else {{"stage": name}}
    Path(os.environ["PIPELINE_RESULT"]).write_text(json.dumps({{"result": result}}))
"""


def _dvc(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CALLS"}  # the twin's runs not counted
    out = subprocess.run(  # stdin: under pytest-xdist the worker's own is its command channel
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
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
def loop(monkeypatch, tmp_path):
    """flows.stages with Prefect's task and run logger out of the way; `loop.called()` lists
    the stand-in stages whose command ran."""
    from flows import stages

    calls = tmp_path / "calls.txt"
    calls.touch()
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setattr(stages, "task", lambda fn, **kw: fn)
    monkeypatch.setattr(stages, "get_run_logger", lambda: logging.getLogger("test"))
    stages.called = lambda: calls.read_text().split()
    stages.forget = lambda: calls.write_text("")
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


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
def test_up_to_date_project_runs_no_stage(dvc_project, loop, monkeypatch):
    lock = (dvc_project / "dvc.lock").read_bytes()
    started = []  # no `dvc repro` process for a stage `dvc status` calls up to date
    real = loop._run_process
    monkeypatch.setattr(loop, "_run_process", lambda cmd, *a: started.append(cmd) or real(cmd, *a))
    runs = loop.run_stages(str(dvc_project / "params.yaml"))
    assert started == []
    assert loop.called() == []
    assert [(r.stage, r.ran, r.reason, r.result) for r in runs] == [
        (s, False, "up to date", None) for s in STAGES
    ]
    assert (dvc_project / "dvc.lock").read_bytes() == lock


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
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

    assert loop.called() == expected == _repro_runs(twin)
    assert [r.stage for r in runs if r.ran] == expected
    first = next(r for r in runs if r.ran)
    assert first.reason == f"changed deps: params.yaml ({SECTION[expected[0]]} modified)"
    assert first.output == {"stage": expected[0]}  # what the stage process reported
    assert "up to date" in _dvc(dvc_project, "status")  # each stage recorded in dvc.lock
    assert (dvc_project / "dvc.lock").read_text() == (twin / "dvc.lock").read_text()


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
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
    loop.forget()

    runs = loop.run_stages(str(dvc_project / "params.yaml"))

    assert loop.called() == [] == _repro_runs(twin)  # outputs come back from .dvc/cache/runs
    restored = [r.stage for r in runs if r.reason.startswith("restored from run-cache")]
    assert restored == ["train", "align", "evaluate", "register"]
    assert "up to date" in _dvc(dvc_project, "status")
    assert (dvc_project / "dvc.lock").read_text() == (twin / "dvc.lock").read_text()


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
def test_force_runs_every_stage_as_dvc_repro_force_does(dvc_project, loop, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(dvc_project, twin, symlinks=True)
    runs = loop.run_stages(str(dvc_project / "params.yaml"), force=True)
    assert loop.called() == list(STAGES)
    assert [(r.stage, r.ran, r.reason) for r in runs] == [(s, True, "forced") for s in STAGES]
    assert "up to date" in _dvc(dvc_project, "status")
    forced = re.findall(r"Running stage '(\w+)'", _dvc(twin, "repro", "--force"))
    assert forced == list(STAGES)
    assert (dvc_project / "dvc.lock").read_text() == (twin / "dvc.lock").read_text()


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
def test_a_forced_nightly_run_retrains_an_up_to_date_workspace(dvc_project, loop, monkeypatch):
    """Issue 17: `--force` used to skip only the unchanged-data check; with nothing stale in
    DVC nothing trained. Forced, train, evaluate and register run again, and the flow reports
    the version the register stage returned."""
    from flows import nightly

    assert "up to date" in _dvc(dvc_project, "status")
    current = {"data_sha256": "d", "params_sha256": "p", "code_sha256": "c"}
    latest = {"version": 7, "tags": {f"lineage.{k}": v for k, v in current.items()}}
    outcomes = []
    monkeypatch.setattr(nightly, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(nightly, "sync_data", lambda params, mode: "data sync: off")
    monkeypatch.setattr(nightly, "fingerprints", lambda params: current)
    monkeypatch.setattr(nightly, "latest_registered", lambda params: latest)
    monkeypatch.setattr(nightly, "registry_snapshot", lambda params: {"latest": 7})
    monkeypatch.setattr(nightly, "concurrency", lambda *a, **kw: contextlib.nullcontext())
    monkeypatch.setattr(nightly, "_outcome", lambda message, details: outcomes.append(message))
    monkeypatch.setattr(nightly, "AFTER_STAGE", {})
    params = str(dvc_project / "params.yaml")

    unforced = nightly.nightly_retrain.fn(params)
    assert unforced.message == "skipped: data, params and code unchanged since version 7"
    assert loop.called() == []

    state = nightly.nightly_retrain.fn(params, force=True)

    assert {"train", "evaluate", "register"} <= set(loop.called())
    assert loop.called() == list(STAGES)  # as `dvc repro --force`
    assert state.message == "trained (forced): registered version 7, promoted to champion"
    assert "up to date" in _dvc(dvc_project, "status")


@pytest.mark.slow  # runs `dvc repro` per stage: the slow tier
def test_a_params_file_other_than_the_projects_is_refused(dvc_project, loop):
    from pipeline.errors import ConfigError

    other = dvc_project / "other.yaml"
    shutil.copy(dvc_project / "params.yaml", other)
    with pytest.raises(ConfigError, match="other.yaml: in a DVC project"):
        loop.run_stages(str(other))
    assert loop.called() == []


CHILD = """
import logging, sys
from tqdm import tqdm
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("pipeline.training.base").info("base: building tiny-qwen 感冒")
logging.getLogger("pipeline.training.base").warning("base: a warning")
print("Running stage 'base':", flush=True)
for _ in tqdm(range(50), desc="pretrain tiny-qwen", unit="step", mininterval=0):
    pass
print("To track the changes with git, run:", flush=True)
print("error: the stage failed", file=sys.stderr, flush=True)
print("ERROR: failed to reproduce 'base': failed to run: python -m pipeline base, exited with 1")
"""


def _forwarded(code: str, terminal: Path, **kwargs) -> list[tuple[int, str]]:
    """(level, message) of what flows.stagelog.forward logged from `python -c code`."""
    from flows.stagelog import forward

    records: list[tuple[int, str]] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append((record.levelno, record.getMessage()))

    run_logger = logging.getLogger(f"test.run.{terminal.stem}")
    run_logger.addHandler(Collect())
    run_logger.setLevel(logging.INFO)
    run_logger.propagate = False
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    with terminal.open("w") as out:
        forward(child.stdout.fileno(), run_logger, every_s=3600, terminal=out, **kwargs)
    assert child.wait() == 0
    return records


def test_a_stage_process_logs_and_progress_bars_reach_the_run_logger(tmp_path):
    seen: list[str] = []
    terminal = tmp_path / "terminal.txt"
    records = _forwarded(CHILD, terminal, watch=seen.append)
    assert records[:3] == [
        (logging.INFO, "base: building tiny-qwen 感冒"),  # the stage's record, as its message
        (logging.WARNING, "base: a warning"),
        (logging.INFO, "Running stage 'base':"),  # DVC's own line, as is
    ]
    bars = [m for _, m in records[3:-2]]
    # the first status line and the finished one; the 49 in between are throttled
    assert len(bars) == 2, bars
    assert bars[0].startswith("pretrain tiny-qwen: 0% 0/50 ")
    assert bars[1].startswith("pretrain tiny-qwen: 100% 50/50 ")
    assert records[-2] == (logging.ERROR, "error: the stage failed")  # DVC's git hint: dropped
    assert records[-1][0] == logging.ERROR and records[-1][1].startswith("ERROR: failed to repro")
    assert "Running stage 'base':" in seen and not any("%|" in line for line in seen)
    assert "100%|" in terminal.read_text()  # the terminal still gets the bar itself


def test_terminal_control_sequences_stay_out_of_the_run_log(tmp_path):
    # tqdm redraws a nested bar with a cursor-up after blanking the line; a line printed then
    # reached the Prefect log as "<37 spaces>\x1b[A[transformers] ..." (seen in a flow run).
    child_code = (
        "import sys\n"
        "sys.stdout.write(' ' * 37 + '\\x1b[A[transformers] mtime may not be reliable\\n')\n"
        "sys.stdout.write('\\x1b[A eval: 100%|##########| 4/4 [00:01<00:00, 3.1it/s]\\n')\n"
    )
    records = [message for _, message in _forwarded(child_code, tmp_path / "ansi.txt")]
    assert records == [
        "[transformers] mtime may not be reliable",
        "eval: 100% 4/4 [00:01<00:00, 3.1it/s]",
    ]


def test_stopping_a_stage_ends_its_whole_process_group(monkeypatch):
    import signal
    import time

    from flows import shutdown

    monkeypatch.setattr(shutdown, "stopping", lambda what, signum: None)  # no watchdog here
    # a shell that ignores SIGTERM and its child, like `dvc repro` and the stage it runs
    group = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    grandchild = int(group.stdout.readline())
    start = time.monotonic()
    shutdown.stop_child(group, "stage train", signal.SIGTERM)
    assert time.monotonic() - start < shutdown.CHILD_GRACE_S + 2
    assert group.returncode == -signal.SIGKILL  # ignored SIGTERM: killed after the grace
    time.sleep(0.2)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running, not a zombie left for a parent (here: whatever reaps orphans) to collect."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


DVC_INTERNALS = ("dvc.stage", "dvc.repo.stage", "dvc.stage.cache", "dvc.repo.reproduce")


def test_flows_use_no_dvc_internals():
    """flows/ drives DVC through `dvc repro` and `Repo.status` only: nothing that a DVC
    upgrade may change under it (stages, stage caches, lock file writing)."""
    found = []
    for path in sorted((REPO / "flows").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [
                f"{path.name}:{node.lineno} {n}"
                for n in names
                if any(n == m or n.startswith(m + ".") for m in DVC_INTERNALS)
            ]
        for word in ("stage_cache", "dump_stages", "RunCacheNotFoundError", ".commit()"):
            if word in source:
                found.append(f"{path.name}: {word}")
    assert found == []
