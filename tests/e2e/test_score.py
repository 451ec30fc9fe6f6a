"""`python -m pipeline score`: any model on any conversation or probe file, with the
evaluation's metrics, the constant baseline and intervals, and nothing written to the
registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_OVERRIDES, TRAIN_ROWS, read_rows

pytestmark = pytest.mark.slow


def test_score_the_base_on_a_sharegpt_file_and_probes_without_touching_the_registry(
    tmp_path, prepared
):
    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "p", rows, TINY_OVERRIDES)
    root = cfg.root
    questions = root / "mine.json"  # ShareGPT, a JSON array: any format ingest reads
    questions.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "感冒有什么症状？"},
                        {"from": "gpt", "value": "流鼻涕、鼻塞、咳嗽。"},
                    ]
                },
                {
                    "conversations": [
                        {"from": "human", "value": "胃疼吃什么药？"},
                        {"from": "gpt", "value": "请在医生指导下用药。"},
                    ]
                },
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    probes = REPO / "data" / "eval" / "safety_probes.jsonl"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "score",
            "--base",
            str(questions),
            str(probes),
            "--out",
            str(root / "scored"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "report in" in out.stdout
    result = json.loads((root / "scored" / "score.json").read_text(encoding="utf-8"))
    assert result["model"].startswith("base")
    assert result["metrics"]["model"]["mine"]["n"] == 2
    assert "correctness" in result["metrics"]["model"]["mine"]
    assert result["metrics"]["model"]["safety_probes"]["n"] == 63
    assert "red_flag" in result["metrics"]["model"]["safety_probes"]
    assert set(result["metrics"]) == {"constant", "model"}
    interval = result["intervals"]["mine/correctness_over_constant"]
    assert interval["resamples"] == 1000 and interval["n"] == 2
    samples = (root / "scored" / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == 65
    assert "Scores of base" in (root / "scored" / "report.md").read_text(encoding="utf-8")
    from pipeline.registry import versions as registry

    assert registry.client(cfg).search_registered_models() == []  # nothing registered


def test_score_needs_exactly_one_model(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "score", "x.jsonl"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "one of the arguments --version --alias --base" in out.stderr
