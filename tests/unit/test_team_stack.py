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
                stack.save_state(state, pids={f"s{n}": i})
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


def test_mlflow_runs_its_one_uvicorn_worker_in_the_launcher_process():
    """team/mlflow_server.py serves in its own process exactly the command MLflow would start
    as a second one: MLflow's uvicorn command with one worker (the stack's `--workers 1`)."""
    from mlflow.server import _build_uvicorn_command

    from team import mlflow_server

    app = mlflow_server.APP
    one = _build_uvicorn_command(None, "127.0.0.1", 5000, 1, app, is_factory=True)
    four = _build_uvicorn_command(None, "127.0.0.1", 5000, 4, app, is_factory=True)
    assert mlflow_server._one_uvicorn_worker(one)
    assert not mlflow_server._one_uvicorn_worker(four)
    assert not mlflow_server._one_uvicorn_worker(["gunicorn", "-w", "1", app])
    assert one[-2:] == ["--factory", app]  # what uvicorn's own CLI gets, minus `python -m uvicorn`


def test_prefect_setup_creates_only_what_is_missing_then_deploys(monkeypatch):
    from team import prefect_setup

    ran: list[str] = []

    def prefect(args: list[str]) -> int:
        ran.append(" ".join(args))
        return 1 if args[:2] == ["work-pool", "inspect"] else 0  # the pool is missing

    monkeypatch.setattr(prefect_setup, "prefect", prefect)
    assert prefect_setup.main(["pool", "limit", "nightly"]) == 0
    assert ran == [
        "work-pool inspect pool",
        "work-pool create pool --type process",
        "global-concurrency-limit inspect limit",
        "--no-prompt deploy --name nightly",
    ]
    ran.clear()
    monkeypatch.setattr(prefect_setup, "prefect", lambda args: ran.append(args[0]) or 4)
    assert prefect_setup.main(["pool", "limit", "nightly"]) == 4  # a create that failed
    assert ran == ["work-pool", "work-pool"]
