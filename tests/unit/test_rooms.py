"""Rooms a newcomer can find: no module in pipeline/, flows/ or team/ over 400 lines, and no
function over 60 lines unless a `# long: <why>` comment inside it says why."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules():
    for top in ("pipeline", "flows", "team"):
        yield from sorted((REPO / top).rglob("*.py"))


def test_no_module_is_over_400_lines():
    over = {
        str(p.relative_to(REPO)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not over, f"split these by concern: {over}"


def test_no_function_is_over_60_lines_without_saying_why():
    over = {}
    for path in _modules():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = lines[node.lineno - 1 : node.end_lineno]
            if len(body) > MAX_FUNCTION_LINES and not any("# long:" in line for line in body):
                over[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = len(body)
    assert not over, f"name the steps, or say why with a '# long:' comment: {over}"
