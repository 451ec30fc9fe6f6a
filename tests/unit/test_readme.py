"""The README's and every docs page's commands exist and say what the project really does."""

import re
import shlex

import pytest

from pipeline.__main__ import _parser
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
PAGES = {"README.md": README} | {
    f"docs/{p.name}": p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md"))
}
# A path in backticks under one of these folders is a file of the repository (outputs such as
# data/split/ or reports/ are not, so they are not checked here).
_PATH = re.compile(r"`((?:pipeline|flows|tests|benchmarks|configs|docs|\.ci)/[\w./-]*)`")


def _named(pattern: str) -> list[tuple[str, str]]:
    """(page, match) for every match of `pattern` on every page, each pair once."""
    return sorted({(page, m) for page, text in PAGES.items() for m in re.findall(pattern, text)})


def quick_start() -> list[str]:
    """The commands of the first fenced block after the Quick start heading (as CI reads it)."""
    heading = re.search(r"^#+ .*quick ?start.*$", README, re.I | re.M)
    block = re.search(r"```[^\n]*\n(.*?)```", README[heading.end() :], re.S)
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [re.sub(r"\s+#.*$", "", line) for line in lines if line and not line.startswith("#")]


def test_quick_start_is_two_make_targets_and_ci_runs_the_second():
    commands = quick_start()
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for command in commands:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_is_a_front_door():
    assert len(README.splitlines()) <= 200


@pytest.mark.parametrize(("page", "line"), _named(r"python -m pipeline [^\n`|]*"))
def test_pipeline_commands_parse(page, line):
    argv = shlex.split(line.split("#")[0])[3:]
    argv = [a for a in argv if a not in ("...", "<stage>", "FILE")] or ["--help"]
    if argv == ["--help"] or "<" in " ".join(argv):
        return
    try:
        _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{line}` is not a valid command line")


@pytest.mark.parametrize(("page", "module"), _named(r"python -m (flows\.\w+)"))
def test_flow_modules_named_exist(page, module):
    assert (REPO / (module.replace(".", "/") + ".py")).exists(), f"{page}: {module}"


@pytest.mark.parametrize(("page", "target"), _named(r"(?m)(?:^|`)make ([a-z][\w-]*)"))
def test_make_targets_named_exist(page, target):
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{page}: make {target}"


def test_paths_named_exist():
    missing = [
        f"{page}: {path}"
        for page, path in _named(_PATH.pattern)
        if not (REPO / path.rstrip("/")).exists()
    ]
    assert missing == []


def _cli_options() -> set[str]:
    """Every option string of `python -m pipeline` and its sub-commands."""
    import argparse

    found: set[str] = set()

    def walk(parser):
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(_parser())
    return found


def test_flags_named_alone_exist():
    """A flag in backticks of its own (`--keep-demo`) is an option of the CLI, or of a script
    of the repository (benchmarks/, flows/, configs/, tools/)."""
    scripts = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("benchmarks", "flows", "configs", "tools")
        for p in (REPO / folder).rglob("*.py")
    )
    options = _cli_options()
    unknown = [
        f"{page}: {flag}"
        for page, flag in _named(r"`(--[a-z][\w-]*)`")
        if flag not in options and f'"{flag}"' not in scripts
    ]
    assert unknown == []
