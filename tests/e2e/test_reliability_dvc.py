"""Issue 11 through real `dvc repro` in a copy of the project: stages never run with a Python
that lacks the project's dependencies (item 3), and personal data reaches no DVC output, cache
or MLflow store (item 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ASSETS, read_rows
from tests.e2e import servers

pytestmark = pytest.mark.slow

VENV = Path(sys.prefix)  # the project's interpreter in this test run
DVC = str(servers.BIN / "dvc")
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
ID_OK = "11010519491231002X"
MOBILE = "13812345678"


def _system_python_lacks_deps() -> bool:
    if SYSTEM_PYTHON is None:
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import pandas, pydantic"], capture_output=True)
    return probe.returncode != 0


def _dvc(root: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    """`.venv/bin/dvc ...` as README says, with `path` as PATH (no PYTHONPATH: the project's
    own copy of the pipeline runs)."""
    environ = {k: v for k, v in servers.env().items() if k != "PYTHONPATH"} | {"PATH": path}
    return subprocess.run(
        [DVC, *args], cwd=root, env=environ, capture_output=True, text=True, timeout=600
    )


@pytest.mark.skipif(not _system_python_lacks_deps(), reason="needs a bare system python3")
def test_dvc_repro_with_a_system_python_first_on_path(tmp_path):
    root = servers.dvc_project(tmp_path / "p", read_rows(ASSETS / "conversations.jsonl")[:30], {})
    bare = tmp_path / "system-bin"  # `python` is the system's python3, which has no deps
    bare.mkdir()
    (bare / "python").symlink_to(SYSTEM_PYTHON)
    path = f"{bare}:/usr/bin:/bin"

    # No project venv: the first stage stops at once with one line saying how to start.
    failed = _dvc(root, path, "repro", "validate")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output
    [line] = [ln for ln in output.splitlines() if "cannot run the pipeline" in ln]
    assert "make run" in line and str(bare / "python") in line
    assert not (root / "data" / "ingested").exists()

    # With the project's .venv (what `make install` creates), every stage runs with it.
    (root / ".venv").symlink_to(VENV, target_is_directory=True)
    done = _dvc(root, path, "repro", "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"running with {root / '.venv' / 'bin' / 'python'} instead" in done.stderr
    assert (root / "data" / "validated" / "conversations.jsonl").is_file()


def _files_holding(root: Path, needles: tuple[str, ...]) -> list[str]:
    """Every file of the project (outputs, .dvc/cache, MLflow store, reports) holding a needle,
    except the raw input itself and git's objects."""
    hits = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(("data/raw/", ".git/")):
            continue
        data = path.read_bytes()
        if any(n.encode() in data for n in needles):
            hits.append(rel)
    return hits


def test_personal_data_reaches_no_output_cache_or_mlflow_store(tmp_path):
    text = f"我的身份证{ID_OK}，电话{MOBILE}，头疼怎么办？"
    valid = {
        "conversations": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "多休息，必要时就医。"},
        ]
    }
    rows = read_rows(ASSETS / "conversations.jsonl")[:30] + [valid]
    root = servers.dvc_project(tmp_path / "p", rows, {"validate.max_quarantine_fraction": 0.5})
    raw = root / "data" / "raw" / "conversations.jsonl"
    with raw.open("a", encoding="utf-8") as f:  # and a malformed record holding both
        f.write(f'{{"conversations": [{{"role": "user", "content": "{text}"\n')
    path = f"{servers.BIN}{os.pathsep}{os.environ['PATH']}"
    done = _dvc(root, path, "repro", "validate")
    assert done.returncode == 0, done.stdout + done.stderr

    assert list((root / ".dvc" / "cache").rglob("*")) and (root / "mlflow").is_dir()
    assert _files_holding(root, (ID_OK, MOBILE)) == []
    kept = [json.loads(line) for line in (root / "data/validated/conversations.jsonl").open()]
    assert [r["conversations"][0]["content"] for r in kept if "pii" in r] == [
        "我的身份证[身份证号]，电话[手机号]，头疼怎么办？"
    ]
    quarantined = (root / "data/quarantine/conversations.jsonl").read_text(encoding="utf-8")
    assert "[手机号]" in quarantined and "malformed_json" in quarantined
