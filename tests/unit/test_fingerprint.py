"""Lineage that reproduces: the git state of a real temporary repository (dirty files, diff
hash, untracked and ignored files), `register.allow_dirty`, and code / params fingerprints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.registry import fingerprint, register
from tests.conftest import REPO, make_project

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def _git(root: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    root = make_project(tmp_path / "p")
    (root / ".gitignore").write_text("/mlflow/\n/scratch/\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "project")
    return root


def test_a_clean_checkout(repo):
    state = fingerprint.git_state(repo)
    assert len(state.commit) == 40
    assert state.tags() == {
        "git_commit": state.commit,
        "git_dirty": "false",
        "git_diff_sha256": "",
        "dirty_files": "",
    }


def test_a_changed_tracked_file_is_dirty_and_its_content_is_hashed(repo):
    params = repo / "params.yaml"
    params.write_text(params.read_text() + "# a comment\n")
    first = fingerprint.git_state(repo)
    assert (first.dirty, first.dirty_files) == ("true", ("params.yaml",))
    assert len(first.diff_sha256) == 64
    params.write_text(params.read_text() + "# another\n")
    assert fingerprint.git_state(repo).diff_sha256 != first.diff_sha256
    _git(repo, "add", "params.yaml")  # staged counts too
    assert fingerprint.git_state(repo).dirty == "true"


def test_untracked_files_count_ignored_ones_and_dvc_lock_do_not(repo):
    (repo / "scratch").mkdir()
    (repo / "scratch" / "notes.txt").write_text("ignored")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # `dvc repro` writes it
    assert fingerprint.git_state(repo).dirty == "false"
    (repo / "data" / "raw" / "more.jsonl").write_text("{}\n")
    state = fingerprint.git_state(repo)
    assert (state.dirty, state.dirty_files) == ("true", ("data/raw/more.jsonl",))
    (repo / "data" / "raw" / "more.jsonl").write_text("{} \n")
    assert fingerprint.git_state(repo).diff_sha256 != state.diff_sha256


def test_the_dirty_list_is_capped(repo):
    for i in range(fingerprint.MAX_DIRTY_SHOWN + 3):
        (repo / f"f{i:02d}.txt").write_text(str(i))
    shown = fingerprint.git_state(repo).tags()["dirty_files"].split(", ")
    assert len(shown) == fingerprint.MAX_DIRTY_SHOWN + 1 and shown[-1] == "... 3 more"


def test_no_repository_is_unknown(tmp_path):
    root = make_project(tmp_path / "p")
    assert fingerprint.git_state(root) == fingerprint.UNKNOWN
    assert fingerprint.UNKNOWN.tags()["git_commit"] == "unknown"


def _cfg(root: Path, allow_dirty: bool):
    return load_config(root / "params.yaml", {"register.allow_dirty": allow_dirty})


def test_allow_dirty_false_refuses_before_anything_is_logged(repo):
    (repo / "new_code.py").write_text("x = 1\n")
    cfg = _cfg(repo, False)
    with pytest.raises(
        PipelineError,
        match=r"dirty checkout: .*new_code\.py.*Commit them.*"
        r"register\.allow_dirty: true",
    ):
        register.run(cfg)
    assert not (repo / "mlflow").exists()  # no tracking store opened, nothing registered
    register.check_clean(_cfg(repo, True), fingerprint.git_state(repo))  # allowed: no error
    (repo / "new_code.py").unlink()
    register.check_clean(cfg, fingerprint.git_state(repo))  # clean: no error


def test_allow_dirty_false_refuses_what_it_cannot_prove_clean(tmp_path):
    root = make_project(tmp_path / "p")
    with pytest.raises(PipelineError, match="not a git checkout.*cannot prove it is clean"):
        register.run(_cfg(root, False))


def test_code_fingerprint_follows_the_project_code_without_git(tmp_path):
    root = make_project(tmp_path / "p")
    cfg = load_config(root / "params.yaml")
    assert fingerprint.code_root(cfg) == REPO  # no pipeline/ of its own: this checkout's
    shutil.copytree(
        REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    assert fingerprint.code_root(cfg) == root
    before = fingerprint.code_sha256(cfg)
    assert before == fingerprint.code_sha256(load_config(REPO / "params.yaml"))  # same bytes
    (root / "pipeline" / "__pycache__").mkdir(exist_ok=True)
    (root / "pipeline" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert fingerprint.code_sha256(cfg) == before
    for changed in (
        "pipeline/templates/qwen2_5.jinja",
        "pipeline/resources/medical_terms.tsv",
        "pipeline/serving/app.py",
        "dvc.yaml",
    ):
        path = root / changed
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert fingerprint.code_sha256(cfg) != before, changed
        path.write_bytes(original)
    assert fingerprint.code_sha256(cfg) == before


def _registered(cfg, version: int = 3) -> dict:
    """What the nightly flow reads from the latest version: its lineage tags."""
    now = fingerprint.current(cfg)
    return {"version": version, "tags": {f"lineage.{k}": v for k, v in now.items()}}


def test_nightly_skips_only_when_data_params_and_code_all_match(tmp_path):
    root = make_project(tmp_path / "p")
    cfg = load_config(root / "params.yaml")
    latest = _registered(cfg)
    assert fingerprint.decide(fingerprint.current(cfg), latest) == (
        False,
        "data, params and code unchanged since version 3",
    )
    assert fingerprint.decide(fingerprint.current(cfg), None) == (True, "no registered version")
    # Params only (data and code as registered): retrain, and say it is the params.
    lr = load_config(root / "params.yaml", {"train.lr": cfg.train.lr / 2})
    assert fingerprint.decide(fingerprint.current(lr), latest) == (
        True,
        "params changed since version 3",
    )
    with (root / "data" / "raw" / "conversations.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"conversations": []}\n')
    assert fingerprint.decide(fingerprint.current(lr), latest) == (
        True,
        "data and params changed since version 3",
    )


def test_nightly_retrains_when_only_the_code_changed(tmp_path):
    root = make_project(tmp_path / "p")
    shutil.copytree(
        REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    cfg = load_config(root / "params.yaml")
    latest = _registered(cfg, version=7)
    assert fingerprint.decide(fingerprint.current(cfg), latest)[0] is False
    with (root / "pipeline" / "train.py").open("a") as f:
        f.write("# a change to the training code\n")
    assert fingerprint.decide(fingerprint.current(cfg), latest) == (
        True,
        "code changed since version 7",
    )


def test_a_version_registered_before_a_fingerprint_existed_counts_as_changed(tmp_path):
    cfg = load_config(make_project(tmp_path / "p") / "params.yaml")
    latest = _registered(cfg)
    del latest["tags"]["lineage.code_sha256"]
    assert fingerprint.decide(fingerprint.current(cfg), latest) == (
        True,
        "code changed since version 3",
    )
