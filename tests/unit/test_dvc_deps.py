"""dvc.yaml knows what each stage depends on: the Python modules its stage module imports
(directly or through other project modules, at module level or inside functions), the
package data they read, and the params sections they read. Derived from the code, so a new
import that dvc.yaml misses fails here instead of letting `dvc repro` call stale outputs up
to date."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from pipeline import STAGE_MODULES, STAGES
from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
# Config attribute -> params.yaml section (two are renamed: `validate` and `register` clash
# with pydantic / stage names).
SECTIONS = {"validate_": "validate", "register_": "register"}
DATA_FILES = {"pipeline/text/medterms.py": ["pipeline/resources/medical_terms.tsv"]}


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    """Project modules that `path` imports anywhere in its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "pipeline" and (file := _module_file(name)):
                found.add(file)
    return found


def closure(stage: str) -> set[str]:
    todo = [_module_file(STAGE_MODULES[stage]), REPO / "pipeline" / "__init__.py"]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += _imports(path)
    return {str(p.relative_to(REPO)) for p in seen}


CONFIG_LOADING = {"pipeline/config.py", "pipeline/model_source.py"}  # validate all of params


def sections_read(files: set[str]) -> set[str]:
    """Top-level params sections the code reads as `cfg.<section>` (config loading, which
    checks every section, aside)."""
    found = set()
    for f in sorted(files - CONFIG_LOADING):
        for attr in re.findall(r"\bcfg\.(\w+)", (REPO / f).read_text(encoding="utf-8")):
            attr = SECTIONS.get(attr, attr)
            if attr in yaml.safe_load((REPO / "params.yaml").read_text()):
                found.add(attr)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_imports_is_a_dvc_dependency(stage):
    code = closure(stage)
    declared = {d.rstrip("/") for d in DVC[stage]["deps"]}
    declared_py = {d for d in declared if d.startswith("pipeline/") and d.endswith(".py")}
    assert sorted(code - declared_py) == [], f"{stage}: imported but not in dvc.yaml deps"
    assert sorted(declared_py - code) == [], f"{stage}: in dvc.yaml deps but not imported"
    data = {d for f in code for d in DATA_FILES.get(f, [])}
    assert sorted(data - declared) == [], f"{stage}: package data read but not a dependency"


@pytest.mark.parametrize("stage", STAGES)
def test_every_params_section_a_stage_reads_is_declared(stage):
    declared = {
        (p if isinstance(p, str) else next(iter(p))).split(".")[0]
        for p in DVC[stage].get("params", [])
    }
    read = sections_read(closure(stage))
    assert sorted(read - declared) == [], f"{stage} reads params sections dvc.yaml does not list"
    assert sorted(declared - read) == [], f"{stage}: dvc.yaml lists params sections it never reads"


def _stage_file(stage: str) -> str:
    return str(_module_file(STAGE_MODULES[stage]).relative_to(REPO))


def test_no_stage_imports_another_stage():
    for stage in STAGES:
        others = {_stage_file(s) for s in STAGES} - {_stage_file(stage)}
        assert sorted(closure(stage) & others) == [], stage


def test_the_closure_follows_imports_inside_functions():
    assert "pipeline/registry/versions.py" in closure("evaluate")  # imported inside run
    assert "pipeline/text/medterms.py" in closure("evaluate")  # through scoring
