"""Fixtures shared by end-to-end test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import flow_project


@pytest.fixture(scope="session")
def flow_built(tmp_path_factory) -> Path:
    """The flow tests' tiny project (tests/e2e/flow_project.py), built once per session."""
    root = tmp_path_factory.mktemp("flow-project") / "built"
    flow_project.build(root)
    return root
