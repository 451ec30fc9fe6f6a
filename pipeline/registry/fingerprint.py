"""What a registered version was made from: one definition of each fingerprint.

`register` writes them as `lineage.*` tags on every version; the nightly flow computes them
again and retrains only when one differs from the latest registered version's (`changed`).

- data_sha256: the bytes of every file `ingest.sources` match, and the preference pairs of
  `align.data` when `align` is enabled (the preference data alone also has its md5 in lineage);
- params_sha256: the typed config (params.yaml after overrides, defaults resolved);
- code_sha256: the code the stages run (pipeline/**/*.py, its templates and resources,
  dvc.yaml), read from disk, so it needs no git and works in a copy or an image;
- git state (`git_state`): commit, whether the checkout differs from it and a hash of that diff.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.io import CHECKOUT

# Compared by the nightly flow, in the order its messages name them.
COMPARED = ("data", "params", "code")
# Written by `dvc repro` while the stages run (outputs' hashes): a result, not an input.
DIRTY_EXEMPT = ("dvc.lock",)
MAX_DIRTY_SHOWN = 10


def data_sha256(cfg: Config) -> str:
    """SHA-256 of every file the `ingest.sources` match (source id, file name, bytes, in params'
    order). Sources may live outside data/raw/ (e.g. a shared CSV)."""
    from pipeline.data.sources import source_files

    digest = hashlib.sha256()
    for src in cfg.ingest.sources:
        for path in source_files(src, cfg.root):
            digest.update(f"{src.id}\0{path.name}\0".encode())
            digest.update(path.read_bytes())
    if cfg.align.enabled:
        for pref in cfg.align.data:
            digest.update(f"align\0{pref.path}\0".encode())
            digest.update((cfg.root / pref.path).read_bytes())
    return digest.hexdigest()


def params_sha256(cfg: Config) -> str:
    """SHA-256 of the typed config as JSON (keys sorted): a comment or a reordering in
    params.yaml does not change it, a value does."""
    tree = cfg.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def params_md5(cfg: Config) -> str:
    """MD5 of params.yaml's bytes, as DVC records files (empty when there is none)."""
    path = cfg.root / "params.yaml"
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else ""


def code_root(cfg: Config) -> Path:
    """The checkout whose code the stages run: the project's own pipeline/ when it has one
    (`dvc repro` runs `python -m pipeline` there), else the one this package came from."""
    return cfg.root if (cfg.root / "pipeline" / "__init__.py").is_file() else CHECKOUT


def code_files(root: Path) -> list[Path]:
    pkg = root / "pipeline"
    found = set(pkg.rglob("*.py")) | set((pkg / "templates").glob("*"))
    found |= set((pkg / "resources").glob("*")) | {root / "dvc.yaml"}
    return sorted(
        (p for p in found if p.is_file() and "__pycache__" not in p.parts),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def code_sha256(cfg: Config) -> str:
    """SHA-256 over the sorted relative paths and bytes of the code the stages run."""
    root = code_root(cfg)
    digest = hashlib.sha256()
    for path in code_files(root):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def current(cfg: Config) -> dict[str, str]:
    """The fingerprints the nightly flow compares, named as the lineage tags (`<what>_sha256`)."""
    return {
        "data_sha256": data_sha256(cfg),
        "params_sha256": params_sha256(cfg),
        "code_sha256": code_sha256(cfg),
    }


def changed(now: dict[str, str], tags: dict[str, str]) -> list[str]:
    """Which of data, params, code differ from a version's `lineage.*` tags (a version
    registered before a fingerprint existed counts as changed)."""
    return [w for w in COMPARED if tags.get(f"lineage.{w}_sha256") != now[f"{w}_sha256"]]


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def decide(now: dict[str, str], latest: dict | None) -> tuple[bool, str]:
    """(retrain?, why) against the latest registered version ({"version", "tags"}; refused
    versions count: the same inputs get the same verdict). Skip only when data, params and
    code all match; `why` names what changed, e.g. "params changed since version 3"."""
    if latest is None:
        return True, "no registered version"
    diff = changed(now, latest["tags"])
    since = f"since version {latest['version']}"
    if not diff:
        return False, f"{_listed(list(COMPARED))} unchanged {since}"
    return True, f"{_listed(diff)} changed {since}"


@dataclass(frozen=True)
class GitState:
    commit: str  # "unknown": no git, or not a repository
    dirty: str  # "true" / "false" / "unknown"
    diff_sha256: str  # "" when clean or unknown
    dirty_files: tuple[str, ...]

    def tags(self) -> dict[str, str]:
        shown = list(self.dirty_files[:MAX_DIRTY_SHOWN])
        if len(self.dirty_files) > MAX_DIRTY_SHOWN:
            shown.append(f"... {len(self.dirty_files) - MAX_DIRTY_SHOWN} more")
        return {
            "git_commit": self.commit,
            "git_dirty": self.dirty,
            "git_diff_sha256": self.diff_sha256,
            "dirty_files": ", ".join(shown),
        }


UNKNOWN = GitState("unknown", "unknown", "", ())


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True)
    except OSError:  # no git on this machine (e.g. a bare GPU image)
        return None
    return out if out.returncode == 0 else None


def git_state(root: Path) -> GitState:
    """The checkout's commit and whether anything differs from it: changes to tracked files
    (staged or not) and untracked files that git does not ignore, anywhere in the repository
    (dvc.lock, which `dvc repro` writes as it runs, aside). The diff hash covers
    `git diff HEAD --binary` and each untracked file's path and bytes."""
    head = _git(root, "rev-parse", "HEAD")
    top = _git(root, "rev-parse", "--show-toplevel")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if head is None or top is None or status is None:
        return UNKNOWN
    repo = Path(top.stdout.decode().strip())
    exempt = [f":(exclude,top){p}" for p in DIRTY_EXEMPT]
    files, untracked = [], []
    entries = iter(status.stdout.decode("utf-8", "surrogateescape").split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, name = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # a rename's source path follows it
        if name in DIRTY_EXEMPT:
            continue
        files.append(name)
        if code == "??":
            untracked.append(name)
    if not files:
        return GitState(head.stdout.decode().strip(), "false", "", ())
    digest = hashlib.sha256()
    diff = _git(repo, "diff", "HEAD", "--binary", "--", ".", *exempt)
    digest.update(diff.stdout if diff else b"")
    for name in sorted(untracked):
        digest.update(f"\0untracked\0{name}\0".encode())
        path = repo / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return GitState(head.stdout.decode().strip(), "true", digest.hexdigest(), tuple(sorted(files)))
