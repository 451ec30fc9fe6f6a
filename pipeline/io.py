"""Small file helpers: JSON Lines in and out, and atomic writes (no half-written artifacts)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

# The checkout this package runs from, and files that only a project folder holds: a folder
# holding one of them is never replaced.
CHECKOUT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("params.yaml", "dvc.yaml", ".git", ".dvc", "pyproject.toml")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file written by this pipeline (trusted: validated upstream)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _umask() -> int:
    """The process umask: read from /proc on Linux (no window where another thread sees a
    changed one), else set and restored."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode open() / mkdir() give a new file / folder: 0o666 / 0o777 less the umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, default_mode())  # mkstemp makes 0600; a report is an ordinary file
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    _atomic_text(path, "".join(f"{line}\n" for line in lines))
    return len(lines)


def write_json(path: Path, obj: Any) -> None:
    _atomic_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def why_protected(path: Path) -> str | None:
    """Why replacing `path` could destroy what the pipeline did not make (None: it cannot)."""
    target = path.resolve()
    if target == Path(target.anchor):
        return "it is the filesystem root"
    if target == Path.home().resolve():
        return "it is the home directory"
    if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        return "it is the current directory or a folder above it"
    if target == CHECKOUT or target in CHECKOUT.parents:
        return "it holds this project's code"
    for name in PROJECT_FILES:
        if (target / name).exists():
            return f"it holds {name}: a project folder, not an output"
    return None


@contextlib.contextmanager
def atomic_dir(path: Path, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only if the block succeeds.

    Never replaces the filesystem root, the home directory, the current directory or a folder
    above it, nor a project folder. With `marker`, an existing non-empty `path` is replaced only
    if it holds that file (written by an earlier run of the same command): a folder the user
    named (`export --out`) is never emptied unless the pipeline made it.
    """
    why = why_protected(path)
    if why is None and marker and is_non_empty(path) and not (path / marker).is_file():
        why = f"it is not empty and holds no {marker} (it was not written by this command)"
    if why:
        raise ConfigError(f"{path}: refusing to replace this folder: {why}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder; expected a folder to replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    tmp.chmod(default_mode(folder=True))  # mkdtemp makes 0700; the output is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def is_non_empty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))
