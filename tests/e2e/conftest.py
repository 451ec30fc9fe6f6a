"""Fixtures shared by end-to-end test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import built_once
from tests.e2e import flow_project, servers


@pytest.fixture(scope="session")
def flow_built(tmp_path_factory) -> Path:
    """The flow tests' tiny project (tests/e2e/flow_project.py), built once per session."""
    return built_once(tmp_path_factory, "flow-project", flow_project.build)


@pytest.fixture(scope="session")
def right_trained(tmp_path_factory) -> Path:
    """The gate test's small corpus with its right answers, through `train` once per session:
    the gate test evaluates a copy, the align test aligns another (`copy_project`)."""
    from tests.e2e.test_gate_knows_wrong_answers import EVAL_SETS, _corpus, _project, _stages

    def build(root: Path) -> None:
        right = _corpus()
        _project(root, right, {k: right[k] for k in EVAL_SETS})
        _stages(root, ("ingest", "validate", "split", "base", "preprocess", "train"))

    return built_once(tmp_path_factory, "right-trained", build)


@pytest.fixture(scope="session")
def prefect_db(tmp_path_factory) -> Path:
    """A Prefect database migrated once per session, copied into each test's PREFECT_HOME by
    tests/e2e/servers.py (`prefect_home`)."""
    path = built_once(tmp_path_factory, "prefect-db", servers.migrate_prefect_db) / "prefect.db"
    servers.PREFECT_DB[:] = [path]
    return path
