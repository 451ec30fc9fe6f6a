"""The process environment: which Python runs the pipeline (one with the project's
dependencies, or none at all), and the offline settings every entry point starts with.

`dvc repro` runs each stage's `python -m pipeline ...` with whatever `python` comes first on
PATH, also when dvc itself was started as `.venv/bin/dvc`: a system Python could run one stage
and crash in the next. `python -m pipeline` therefore checks first (~20-40 ms, before any
third-party import) that every requirement of the installed `qwen-medical-mlops` distribution
is installed in the running interpreter, at a version it admits (versions are compared where
`packaging` is importable). If one is not, it re-runs the same command with the project's own
`.venv/bin/python` when there is one, and otherwise exits with one line saying how to start.
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

# No telemetry, no analytics calls, no tokenizer thread pools forked into workers. The one
# place these are written: the CLI, both flows, the tests, the benchmarks and the servers the
# tests start all apply them (`offline_env`), each only where the user has not set it.
OFFLINE_DEFAULTS = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",  # dvc reads this, not DO_NOT_TRACK
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def offline_env(env: dict[str, str] | None = None, hub_offline: bool = False) -> dict[str, str]:
    """Apply OFFLINE_DEFAULTS to `env` (default: this process's os.environ) where unset, and
    HF_HUB_OFFLINE=1 with `hub_offline` (tests and benchmarks: no hub is reachable there; the
    CLI leaves the hub reachable for a hub `model.base`). Returns `env`."""
    target = os.environ if env is None else env
    for key, value in OFFLINE_DEFAULTS.items():
        target.setdefault(key, value)
    if hub_offline:
        target.setdefault("HF_HUB_OFFLINE", "1")
    return target


def _requirements() -> list[str]:
    """The distribution's runtime requirements (e.g. "pandas>=2.2"); [DIST] when it is not
    installed here and no pyproject.toml beside the code says what it needs."""
    try:
        requires = metadata.distribution(DIST).requires or []
    except metadata.PackageNotFoundError:
        pyproject = CHECKOUT / "pyproject.toml"
        if not pyproject.is_file():
            return [DIST]
        import tomllib

        requires = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    # dev tools (pytest, ruff) are not needed to run a stage
    return [r.strip() for r in requires if "extra ==" not in r]


def _unmet(requirement: str) -> str | None:
    """`requirement` itself when it is not installed (or, where `packaging` is there to tell,
    installed at a version it excludes); None when it is met."""
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group()
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return name
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare interpreter: the name has to do
        return None
    spec = Requirement(requirement).specifier
    return None if spec.contains(installed, prereleases=True) else f"{name}{spec} ({installed})"


def missing_requirements() -> list[str]:
    return [unmet for r in _requirements() if (unmet := _unmet(r))]


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
