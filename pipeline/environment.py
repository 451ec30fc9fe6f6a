"""Which Python runs the pipeline: one with the project's dependencies, or none at all.

`dvc repro` runs each stage's `python -m pipeline ...` with whatever `python` comes first on
PATH, also when dvc itself was started as `.venv/bin/dvc`: a system Python could run one stage
and crash in the next. `python -m pipeline` therefore checks first (standard library only,
~20 ms) that every requirement of the installed `qwen-medical-mlops` distribution is installed
in the running interpreter. If one is missing it re-runs the same command with the project's
own `.venv/bin/python` when there is one, and otherwise exits with one line saying how to start.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

DIST = "qwen-medical-mlops"
CHECKOUT = Path(__file__).resolve().parents[1]
REEXEC_FLAG = "PIPELINE_REEXEC"  # set on the re-run: never loop between interpreters
EXIT_CODE = 7  # errors.SetupError.exit_code (this module runs before any other import)


def _requirement_names() -> list[str]:
    """The distribution's runtime requirements (names only); [DIST] when it is not installed
    here and no pyproject.toml beside the code says what it needs."""
    try:
        requires = metadata.distribution(DIST).requires or []
    except metadata.PackageNotFoundError:
        pyproject = CHECKOUT / "pyproject.toml"
        if not pyproject.is_file():
            return [DIST]
        import tomllib

        requires = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    names = []
    for req in requires:
        if "extra ==" in req:  # dev tools (pytest, ruff): not needed to run a stage
            continue
        names.append(re.match(r"[A-Za-z0-9_.-]+", req.strip()).group())
    return names


def missing_requirements() -> list[str]:
    missing = []
    for name in _requirement_names():
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _project_python() -> Path | None:
    """The project's own interpreter (`make install` puts it in .venv), if it is not this one."""
    for root in dict.fromkeys((CHECKOUT, Path.cwd())):
        venv = root / ".venv"
        python = venv / "bin" / "python"
        if python.is_file() and Path(sys.prefix).resolve() != venv.resolve():
            return python
    return None


def require_project_interpreter(argv: list[str]) -> None:
    """Return if this interpreter can run the pipeline; else re-run `argv` (the arguments after
    `python -m pipeline`) with the project's .venv, or exit with one line."""
    missing = missing_requirements()
    if not missing:
        return
    python = None if os.environ.get(REEXEC_FLAG) else _project_python()
    shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
    if python is not None:
        print(
            f"pipeline: {sys.executable} lacks {shown}; running with {python} instead",
            file=sys.stderr,
        )
        sys.stdout.flush()
        os.environ[REEXEC_FLAG] = "1"
        os.execv(python, [str(python), "-m", "pipeline", *argv])
    print(
        f"error: {sys.executable} cannot run the pipeline (missing {shown}); run `make run`, "
        "or `make install` and `source .venv/bin/activate` first",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_CODE)
