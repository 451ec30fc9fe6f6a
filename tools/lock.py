"""requirements.lock: the exact versions `make install` puts in, written from pyproject.toml.

    make lock                            # after any edit of pyproject's dependencies
    make lock LOCK_ARGS=--upgrade        # move every pin to the newest release the ranges accept
    make lock LOCK_ARGS="-P transformers"  # move one

`make lock` runs `python tools/lock.py write`: `uv pip compile` of the main dependencies and the
dev extra, one universal resolution (markers instead of one file per platform) with one version
of each package for every Python the project supports (`--fork-strategy fewest`). uv keeps the
pins the lock already holds unless asked to move them, so the same pyproject and lock give the
same file. torch is resolved at Makefile's TORCH_VERSION (so its own dependencies are locked) but
left out of the file, and so are its CUDA wheels: `make install` puts in the CPU build first, or
keeps the torch a CUDA machine already has. The file's header records a hash of pyproject's
dependency lists; `python tools/lock.py check` (make install) and tests/unit/test_lock.py
refuse a lock older than pyproject.

Standard library only except `problems` (packaging): `check` runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
EXTRAS = ("dev", "team")  # the extras that `make install` installs with the main dependencies
DIGEST_LINE = "# pyproject-sha256: "
TORCH_LINE = "# torch (installed first by make install, not from this file): "
# torch's CUDA runtime (its Linux wheel on PyPI requires these; the CPU build requires none).
# A torch upgrade can rename them: test_lock fails on any nvidia-*, cuda-* or triton left in.
TORCH_CUDA = (
    "cuda-bindings",
    "cuda-toolkit",
    "nvidia-cudnn-cu13",
    "nvidia-cusparselt-cu13",
    "nvidia-nccl-cu13",
    "nvidia-nvshmem-cu13",
    "triton",
)
CUDA_NAME = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


class LockError(Exception):
    """requirements.lock does not match pyproject.toml, or cannot be written."""


def canonical(name: str) -> str:
    """PEP 503 name: `ruamel.yaml` and `Ruamel_YAML` are both `ruamel-yaml`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not match:
        raise LockError(f"pyproject.toml: {spec!r} is not a requirement (expected name[spec])")
    return canonical(match.group(1))


def pyproject_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The main dependencies and the dev extra, as written."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(r for name in EXTRAS for r in extras.get(name, []))]


def deps_digest(pyproject: Path = PYPROJECT) -> str:
    """sha256 of what the lock is resolved from: requires-python, the dependencies and the
    extras (whitespace and order aside, so a comment or a reflow does not need `make lock`)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    inputs = {
        "requires-python": project.get("requires-python", ""),
        "requirements": sorted(re.sub(r"\s+", "", r) for r in pyproject_requirements(pyproject)),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass
class Lock:
    digest: str | None = None
    torch: str | None = None
    pins: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name: (version, marker)
    top: set[str] = field(default_factory=set)  # names that pyproject itself requires


def read_lock(path: Path = LOCK, project: str | None = None) -> Lock:
    """Parse uv's requirements output (split annotations) and this script's header lines;
    `top` holds the packages annotated `via <project> (pyproject.toml)`."""
    if not path.exists():
        raise LockError(f"{path.name} is missing: run `make lock`")
    lock, current = Lock(), None
    via_project = f"{project} (pyproject.toml)" if project else None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(DIGEST_LINE):
            lock.digest = line.removeprefix(DIGEST_LINE).strip()
        elif line.startswith(TORCH_LINE):
            lock.torch = line.removeprefix(TORCH_LINE).strip()
        elif line.strip().startswith("#"):
            if current and line.strip().lstrip("#").strip().removeprefix("via ") == via_project:
                lock.top.add(current)
        elif line.strip():
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)\s*(?:;\s*(.*))?", line.strip())
            if not match:
                raise LockError(f"{path.name}:{number}: {line!r} is not `name==version[ ; marker]`")
            current = canonical(match.group(1))
            lock.pins.setdefault(current, []).append((match.group(2), match.group(3) or ""))
    return lock


def stale(pyproject: Path = PYPROJECT, lock_path: Path = LOCK) -> str | None:
    """Why the lock is older than pyproject's dependency lists, or None."""
    recorded = read_lock(lock_path).digest
    if recorded != deps_digest(pyproject):
        return (
            f"{lock_path.name} was written for other dependencies than {pyproject.name}'s "
            f"(recorded sha256 {recorded}, now {deps_digest(pyproject)}): run `make lock`"
        )
    return None


def problems(pyproject: Path = PYPROJECT, lock_path: Path = LOCK) -> list[str]:
    """Every way the lock and pyproject disagree (empty when they agree)."""
    from packaging.requirements import Requirement

    name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    lock, found = read_lock(lock_path, project=name), []
    if reason := stale(pyproject, lock_path):
        found.append(reason)
    wanted = {}
    for spec in pyproject_requirements(pyproject):
        req = Requirement(spec)
        wanted[canonical(req.name)] = req
        if canonical(req.name) == "torch":
            continue  # installed first, outside the lock: see lock.torch
        pins = lock.pins.get(canonical(req.name))
        if not pins:
            found.append(f"{spec!r} (pyproject.toml) is not in {lock_path.name}: run `make lock`")
        for version, _ in pins or []:
            if not req.specifier.contains(version, prereleases=True):
                found.append(f"{lock_path.name} pins {req.name}=={version}, outside {spec!r}")
    for name in sorted(lock.top - wanted.keys()):
        found.append(f"{lock_path.name} says pyproject requires {name}; it does not: `make lock`")
    if "torch" in wanted and lock.torch:
        version = lock.torch.split("==")[-1]
        if not wanted["torch"].specifier.contains(version, prereleases=True):
            found.append(f"{lock_path.name} resolved {lock.torch}, outside {wanted['torch']}")
    cuda = sorted(name for name in lock.pins if CUDA_NAME.match(name) or name == "torch")
    if cuda:
        found.append(f"{lock_path.name} holds torch or CUDA wheels {cuda}: extend TORCH_CUDA")
    return found


def write(uv: str, torch: str, extra_args: list[str], lock_path: Path = LOCK) -> None:
    """Resolve with uv into lock_path and stamp the header; LockError when uv fails."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints, excludes = Path(tmp, "torch.txt"), Path(tmp, "cuda.txt")
        constraints.write_text(torch + "\n")
        excludes.write_text("\n".join(TORCH_CUDA) + "\n")
        command = [
            uv, "pip", "compile", str(PYPROJECT),
            *(arg for name in EXTRAS for arg in ("--extra", name)),
            "--universal", "--fork-strategy", "fewest",
            "--constraints", str(constraints), "--excludes", str(excludes),
            "--no-emit-package", "torch", "--custom-compile-command", "make lock",
            "--quiet", "--output-file", str(lock_path), *extra_args,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise LockError(f"uv pip compile failed (exit {done.returncode}):\n{done.stderr.strip()}")
    lines = lock_path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = [f"{DIGEST_LINE}{deps_digest()}\n", f"{TORCH_LINE}{torch}\n"]
    lock_path.write_text("".join(lines[:2] + header + lines[2:]), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="resolve pyproject.toml into requirements.lock (make lock)")
    w.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable")
    w.add_argument("--torch", required=True, help="the torch pin to resolve at, torch==X.Y.Z")
    sub.add_parser("check", help="fail when requirements.lock is older than pyproject.toml")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "write":
            write(args.uv, args.torch, rest)
            print(
                f"{LOCK.name}: {len(read_lock().pins)} packages (+ {args.torch}, installed first)"
            )
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        elif reason := stale():
            raise LockError(reason)
    except LockError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
