"""Done-when of the exact-deps work: appending a comment to any module a stage imports makes
`dvc status` list that stage (and only the stages that import it). The project's code and
dvc.yaml are copied into a DVC project whose outputs are stand-ins committed with `dvc commit`:
what is tested is DVC's view of the dependencies, not the stages' work."""

from __future__ import annotations

import contextlib
import shutil

import pytest
import yaml

from pipeline import STAGES
from tests.conftest import REPO
from tests.unit.test_dvc_deps import closure


def _paths(stage: dict, key: str):
    for entry in stage.get(key, []):
        yield entry if isinstance(entry, str) else next(iter(entry))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvc-status")
    shutil.copytree(
        REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(REPO / name, root / name)
    Repo.init(str(root), no_scm=True)
    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for key in ("deps", "outs", "metrics", "plots"):
            for path in (root / p.rstrip("/") for p in _paths(stage, key)):
                if path.exists():
                    continue
                if path.suffix:  # a file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n")
                else:
                    path.mkdir(parents=True)
                    (path / "stand-in").write_text("x\n")
    with contextlib.chdir(root):  # DVC resolves stage paths against the working directory
        dvc = Repo(str(root))
        dvc.commit(None, force=True)
        yield root, dvc
        dvc.close()


def test_a_comment_in_any_imported_module_makes_exactly_its_stages_stale(repo):
    root, dvc = repo
    assert dvc.status() == {}, "the committed stand-in project should be up to date"
    importers: dict[str, set[str]] = {}
    for stage in STAGES:
        for module in closure(stage):
            importers.setdefault(module, set()).add(stage)
    assert len(importers) > 20
    wrong = {}
    for module, stages in sorted(importers.items()):
        path = root / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# a comment\n")
        try:
            stale = set(dvc.status())
        finally:
            path.write_bytes(original)
        if stale != stages:
            wrong[module] = {"dvc status": sorted(stale), "imported by": sorted(stages)}
    assert not wrong, wrong
    assert dvc.status() == {}
