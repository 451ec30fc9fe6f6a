"""A project folder that is moved keeps its MLflow artifacts inside it: runs logged after the
move write under the new folder (nothing under the old path), and runs logged before stay
readable from their new place."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.registry import tracking
from tests.conftest import make_project


@pytest.fixture
def no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _log(root, name: str, run_id: str | None = None) -> str:
    import mlflow

    cfg = load_config(root / "params.yaml")
    experiment_id = tracking.setup(cfg)
    (root / name).write_text(name)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(root / name), artifact_path="notes")
    return run.info.run_id


def test_artifacts_follow_a_moved_project(tmp_path, no_env_uri):
    import mlflow

    old = make_project(tmp_path / "old")
    first = _log(old, "before.txt")
    assert list((old / "mlflow" / "artifacts").rglob("before.txt"))
    new = old.rename(tmp_path / "moved")

    second = _log(new, "after.txt")
    assert not old.exists(), "something was written to the old folder"
    [written] = list((new / "mlflow" / "artifacts").rglob("after.txt"))
    assert written.read_text() == "after.txt" and second in written.parts
    # A run logged before the move: readable, and resuming it writes in the new folder too.
    got = mlflow.artifacts.download_artifacts(
        run_id=first, artifact_path="notes/before.txt", dst_path=str(tmp_path / "dl")
    )
    assert open(got).read() == "before.txt"
    _log(new, "resumed.txt", run_id=first)
    assert not old.exists()
    assert list((new / "mlflow" / "artifacts").rglob("resumed.txt"))
    assert mlflow.get_run(first).info.artifact_uri.startswith(new.resolve().as_uri())


def test_a_copied_project_writes_into_the_copy_and_the_original_keeps_its_own(tmp_path, no_env_uri):
    import shutil

    original = make_project(tmp_path / "a")
    _log(original, "one.txt")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    _log(copy, "two.txt")
    assert list((copy / "mlflow" / "artifacts").rglob("two.txt"))
    assert not list((original / "mlflow" / "artifacts").rglob("two.txt"))
    _log(original, "three.txt")  # the original's store was not rewritten
    assert list((original / "mlflow" / "artifacts").rglob("three.txt"))
    assert not list((copy / "mlflow" / "artifacts").rglob("three.txt"))
