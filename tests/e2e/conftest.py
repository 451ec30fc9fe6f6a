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


@pytest.fixture(scope="session")
def right_trained(tmp_path_factory) -> Path:
    """The gate test's small corpus with its right answers, through `train` once per session:
    the gate test evaluates a copy, the align test aligns another (`copy_project`)."""
    from tests.e2e.test_gate_knows_wrong_answers import EVAL_SETS, _corpus, _project, _stages

    right = _corpus()
    root = _project(
        tmp_path_factory.mktemp("right-trained") / "right",
        right,
        {k: right[k] for k in EVAL_SETS},
    )
    _stages(root, ("ingest", "validate", "split", "base", "preprocess", "train"))
    return root
