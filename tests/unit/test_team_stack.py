"""The team stack's own bookkeeping (team/stack.py), without starting a server."""

from __future__ import annotations

import json
import threading

from team.stack import Stack


def test_state_saved_from_several_threads_at_once(tmp_path):
    """`up` starts S3, MLflow and Prefect side by side and each records its pid as soon as it
    started: concurrent saves must neither fail nor leave a torn state.json (they once shared
    one temp file: `up` failed now and then with FileNotFoundError on state.tmp)."""
    stack = Stack(tmp_path / "stack", tmp_path)
    stack.folder.mkdir()
    state = {"ports": {}, "pids": {}}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def save(n: int) -> None:
        start.wait()
        try:
            for i in range(200):
                stack.save_state(state, **{f"s{n}": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    saved = json.loads((stack.folder / "state.json").read_text())
    assert saved["pids"] == {f"s{n}": 199 for n in range(6)}
    assert (stack.folder / "state.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in stack.folder.iterdir()) == ["state.json"]
