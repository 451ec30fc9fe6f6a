"""The documented own-data path on a slice of the real corpus (issue 20): `python -m pipeline
own-data` points params.yaml at a GB18030 CSV, and the pipeline trains on it alone and judges
the user's questions, sampled across departments, with metrics that can judge them.

Skips cleanly where ../shared/data (the real corpus, never committed) is absent."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline import STAGE_MODULES
from pipeline.config import load_config
from tests.conftest import REPO, make_project
from tests.unit.test_own_data_eval import CSV

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CSV is None, reason="the real corpus (../shared/data) is absent"),
]

# Short settings: the path, the sample and the gate's evidence are under test, not the model.
FAST = {
    "tiny.epochs": 2,
    "tiny.max_tokens": 250000,
    "train.epochs": 1,
    "evaluate.max_new_tokens": 48,
}


def _slice(every: int = 12) -> str:
    """Every `every`-th record of the real CSV (multi-line cells kept whole), as CSV text."""
    text = CSV.read_bytes().decode("gb18030")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(rows[0])
    writer.writerows(rows[1::every])
    return out.getvalue()


def test_own_csv_alone_is_trained_on_and_judged_across_departments(tmp_path: Path):
    root = make_project(tmp_path / "own")
    (root / "data" / "raw" / "cmd.csv").write_bytes(_slice().encode("gb18030"))
    args = "--id cmd --format csv --encoding gb18030 --question-columns title,ask"
    args += " --answer-column answer --category-column department --max-quarantine 0.1"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "own-data", "data/raw/cmd.csv", *args.split()],
        cwd=root,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "primary_set: test.cmd" in done.stdout
    cfg = load_config(root / "params.yaml", FAST)
    assert [s.id for s in cfg.ingest.sources] == ["cmd"] and not cfg.evaluate.sets
    for stage in ("ingest", "validate", "split", "base", "preprocess", "train", "evaluate"):
        importlib.import_module(STAGE_MODULES[stage]).run(cfg)

    # trained on the user's file alone: no demo conversation reached the training split
    train = [json.loads(line) for line in (root / "data/split/train.jsonl").open()]
    assert {r["source"] for r in train} == {"cmd"}
    gate = json.loads((root / "reports" / "gate.json").read_text())
    assert gate["primary_set"] == "test.cmd"
    covered = gate["coverage"]["test"]["cmd"]
    assert covered["judged"] == 40 and covered["available"] > 40
    judged = Counter({k: j for k, (j, _) in covered["categories"].items() if j})
    assert len(judged) >= 4, judged  # the sample spans the departments, not the file's first one
    biggest = max(covered["categories"].items(), key=lambda kv: kv[1][1])
    assert biggest[1][0] >= 10  # the largest department gets its share of the 40
    # correctness cannot judge free-text doctors' answers: shown, not counted
    judgeable = gate["relevance"]["judgeable"]["test.cmd"]
    assert not judgeable["correctness"]["can_judge"]
    rules = {r["rule"]: r for r in gate["rules"]}
    assert rules["correctness_gain_over_base"]["status"] == "not_judged"
    if judgeable["rouge_l"]["can_judge"]:
        assert "rouge_l_relevance_gap" in rules
    else:
        assert "relevance_gap" in rules and not gate["promote"]
    report = (root / "reports" / "eval_report.md").read_text(encoding="utf-8")
    assert "Trained on: cmd: cmd.csv." in report and "demo data" not in report
    assert "Test questions judged from source `cmd`: 40 of" in report
    assert "CANNOT JUDGE (not counted)" in report
