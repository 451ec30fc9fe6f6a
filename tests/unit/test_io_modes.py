"""Files and folders the pipeline writes get the modes open() and mkdir() would give them
(0o666 / 0o777 less the umask), not mkstemp's / mkdtemp's private 0600 / 0700."""

from __future__ import annotations

import os
import stat

import pytest

from pipeline.io import atomic_dir, write_json, write_jsonl


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_json_and_jsonl_get_the_mode_open_would_give(tmp_path, umask):
    write_json(tmp_path / "report.json", {"a": 1})
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    expected = 0o666 & ~umask
    assert _mode(tmp_path / "plain.txt") == expected
    assert _mode(tmp_path / "report.json") == expected
    assert _mode(tmp_path / "rows.jsonl") == expected


def test_an_atomic_folder_gets_the_mode_mkdir_would_give(tmp_path, umask):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f.txt").write_text("x")
    assert _mode(tmp_path / "out") == 0o777 & ~umask
