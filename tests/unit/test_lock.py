"""requirements.lock agrees with pyproject.toml, so `make install` puts in what pyproject asks
for at the versions the lock pins; an edit of pyproject's dependencies without `make lock` fails
here. Offline: reads the two files only (tools/lock.py does the parsing for make and for this)."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import REPO
from tools.lock import LockError, deps_digest, problems, read_lock, stale

PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "requirements.lock"


def test_the_lock_agrees_with_pyproject():
    found = problems(PYPROJECT, LOCK)
    assert not found, "\n".join(found)


def test_every_locked_package_is_one_pinned_version():
    pins = read_lock(LOCK).pins
    assert len(pins) > 100  # the whole stack, not only pyproject's own list
    assert {name: v for name, v in pins.items() if len({version for version, _ in v}) > 1} == {}


def test_makefile_installs_the_torch_the_lock_was_resolved_at():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    version = re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, re.M).group(1)
    assert "TORCH_SPEC ?= torch==$(TORCH_VERSION)" in makefile
    assert read_lock(LOCK).torch == f"torch=={version}"


@pytest.fixture
def copies(tmp_path):
    """A pyproject.toml and requirements.lock to break, side by side as in the repo."""
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    shutil.copy(LOCK, tmp_path / "requirements.lock")
    return tmp_path / "pyproject.toml", tmp_path / "requirements.lock"


def _replace(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _dependency_lines(pyproject) -> list[str]:
    """The lines of `dependencies = [...]`, one requirement each (as this pyproject writes them)."""
    text = pyproject.read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[\n(.*?)\n\]", text, re.M | re.S).group(1)
    return [line for line in block.splitlines() if line.strip().startswith('"')]


def test_a_dependency_added_without_make_lock_fails_naming_make_lock(copies):
    pyproject, lock = copies
    _replace(pyproject, "dependencies = [\n", 'dependencies = [\n    "not-locked-yet>=1.16,<2",\n')
    found = problems(pyproject, lock)
    assert "run `make lock`" in stale(pyproject, lock)
    assert any("sha256" in p and "make lock" in p for p in found), found
    assert any("'not-locked-yet>=1.16,<2' (pyproject.toml) is not in" in p for p in found), found


def test_a_dev_tool_added_without_make_lock_fails(copies):
    pyproject, lock = copies
    _replace(pyproject, "dev = [", 'dev = ["not-locked-yet", ')
    assert any(
        "'not-locked-yet' (pyproject.toml) is not in" in p for p in problems(pyproject, lock)
    )


def test_a_range_the_locked_version_leaves_fails(copies):
    pyproject, lock = copies
    line = next(line for line in _dependency_lines(pyproject) if "torch" not in line)
    spec = re.search(r'"([^"]+)"', line).group(1)
    name = re.match(r"[A-Za-z0-9._-]+", spec).group(0)
    locked = read_lock(lock).pins[name.lower()][0][0]
    _replace(pyproject, f'"{spec}"', f'"{name}>{locked}"')
    assert any(f"pins {name}=={locked}, outside" in p for p in problems(pyproject, lock))


def test_a_dependency_dropped_from_pyproject_but_still_locked_fails(copies):
    pyproject, lock = copies
    only_ours = re.compile(r"^(\S+)==\S+\n    # via qwen-medical-mlops \(pyproject.toml\)$", re.M)
    name = next(
        name
        for name in only_ours.findall(lock.read_text())
        if any(f'"{name}' in line for line in _dependency_lines(pyproject))
    )
    line = next(line for line in _dependency_lines(pyproject) if f'"{name}' in line)
    _replace(pyproject, line, "    # " + line.strip())
    found = problems(pyproject, lock)
    assert any(f"says pyproject requires {name}; it does not" in p for p in found), found


def test_a_comment_or_a_reorder_needs_no_make_lock(copies):
    pyproject, lock = copies
    before = deps_digest(pyproject)
    first, second = _dependency_lines(pyproject)[:2]
    _replace(
        pyproject, f"{first}\n{second}", f"{second}  # a comment\n{first.replace('>=', ' >= ')}"
    )
    assert deps_digest(pyproject) == before
    assert problems(pyproject, lock) == []


def test_cuda_wheels_in_the_lock_fail(copies):
    pyproject, lock = copies
    lock.write_text(lock.read_text() + "nvidia-nccl-cu14==3.0.1 ; sys_platform == 'linux'\n")
    assert any("CUDA wheels ['nvidia-nccl-cu14']" in p for p in problems(pyproject, lock))


def test_a_line_that_is_not_a_pin_is_named_by_file_and_line(copies):
    pyproject, lock = copies
    n = len(lock.read_text().splitlines()) + 1
    lock.write_text(lock.read_text() + "peft>=0.21\n")
    with pytest.raises(LockError, match=rf"requirements.lock:{n}: 'peft>=0.21' is not `name=="):
        problems(pyproject, lock)


def test_a_missing_lock_says_make_lock(copies):
    pyproject, lock = copies
    lock.unlink()
    with pytest.raises(LockError, match="requirements.lock is missing: run `make lock`"):
        stale(pyproject, lock)
