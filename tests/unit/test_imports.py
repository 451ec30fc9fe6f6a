"""Import rules, like the rooms test: code in pipeline/, flows/ and benchmarks/ uses only the
public names of other modules, and no module imports a stage module (pipeline.STAGE_MODULES)
except the entry points that run stages: pipeline/__main__.py, flows/ and tests/. Shared code
lives in a helper module beside the stages, so a stage's dvc.yaml deps stay honest and a
private helper can change without breaking a caller it never knew about."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline import STAGE_MODULES
from tests.conftest import REPO

CHECKED = ("pipeline", "flows", "benchmarks")
PROJECT = ("pipeline", "flows", "benchmarks", "tests")
STAGE_IMPORTERS = ("pipeline/__main__.py", "flows/", "tests/")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join([*package, node.module] if node.module else package)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path):
    """(line, imported module, imported name or None) for every project import in `path`, and
    the local names bound to project modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PROJECT:
                    found.append((node.lineno, a.name, None))
                    if a.asname:
                        modules[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path)
            if base.split(".")[0] not in PROJECT:
                continue
            for a in node.names:
                if _is_module(f"{base}.{a.name}"):
                    found.append((node.lineno, f"{base}.{a.name}", None))
                    modules[a.asname or a.name] = f"{base}.{a.name}"
                else:
                    found.append((node.lineno, base, a.name))
    return tree, found, modules


def _files():
    for top in CHECKED:
        yield from sorted((REPO / top).rglob("*.py"))


def private_names_used(path: Path) -> list[str]:
    """`from m import _x`, and `m._x` where `m` is a project module `path` imported."""
    tree, found, modules = _imports(path)
    rel = path.relative_to(REPO)
    bad = [f"{rel}:{line} {mod}.{name}" for line, mod, name in found if name and _private(name)]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _private(node.attr)
        ):
            bad.append(f"{rel}:{node.lineno} {modules[node.value.id]}.{node.attr}")
    return bad


def stage_modules_imported(path: Path) -> list[str]:
    rel = path.relative_to(REPO)
    stages = set(STAGE_MODULES.values())
    if str(rel).startswith(STAGE_IMPORTERS):
        return []
    _, found, _ = _imports(path)
    return sorted({f"{rel}:{line} {mod}" for line, mod, _ in found if mod in stages})


def test_no_code_uses_another_modules_private_names():
    bad = [hit for path in _files() for hit in private_names_used(path)]
    assert not bad, f"make the name public (it is an API) or move the code: {bad}"


def test_no_module_imports_a_stage_module_but_the_entry_points():
    bad = [hit for path in _files() for hit in stage_modules_imported(path)]
    assert not bad, (
        "move what is shared into a helper module beside the stage (a stage is run by "
        f"`python -m pipeline`, flows/ or `pipeline.run_stage`): {bad}"
    )


def test_the_rules_see_what_they_forbid(tmp_path, monkeypatch):
    """Both rules catch each spelling: from-import, module attribute, stage by package."""
    import tests.unit.test_imports as rules

    monkeypatch.setattr(rules, "REPO", tmp_path)
    (tmp_path / "pipeline" / "evaluation").mkdir(parents=True)
    for name in ("pipeline/__init__.py", "pipeline/evaluation/__init__.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "pipeline/evaluation/gate.py").write_text("def _gain_rule(): ...\n")
    (tmp_path / "pipeline/evaluation/evaluate.py").write_text("def run(cfg): ...\n")
    user = tmp_path / "pipeline" / "evaluation" / "score.py"
    user.write_text(
        "from pipeline.evaluation.gate import _gain_rule\n"
        "from pipeline.evaluation import gate, evaluate\n"
        "from . import evaluate as ev\n"
        "gate._gain_rule()\n"
    )
    assert private_names_used(user) == [
        "pipeline/evaluation/score.py:1 pipeline.evaluation.gate._gain_rule",
        "pipeline/evaluation/score.py:4 pipeline.evaluation.gate._gain_rule",
    ]
    assert stage_modules_imported(user) == [
        "pipeline/evaluation/score.py:2 pipeline.evaluation.evaluate",
        "pipeline/evaluation/score.py:3 pipeline.evaluation.evaluate",
    ]
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "run.py").write_text("from pipeline.evaluation import evaluate\n")
    assert stage_modules_imported(tmp_path / "flows" / "run.py") == []
