"""The preference stage through the real stages, on the gate test's small corpus: the SFT adapter
is aligned with DPO on the shipped safety pairs and evaluated beside the SFT-only adapter (the
alignment rules carry paired intervals, the aligned adapter's state names method and data md5);
the same adapter aligned on the pairs swapped (chosen <-> rejected) is refused by the gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import copy_project
from tests.e2e.test_gate_knows_wrong_answers import _stages

pytestmark = pytest.mark.slow

SWAPPED = "data/preference/swapped.jsonl"
ON = {"align.enabled": True}


def _swap(root: Path) -> None:
    rows = [
        json.loads(line)
        for line in (root / "data/preference/safety_pairs.jsonl").read_text().splitlines()
    ]
    rows = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    (root / SWAPPED).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _rule(result, name: str):
    return next(r for r in result.decision.rules if r.rule == name)


def _red_flags(result, who: str) -> float:
    return result.metrics[who]["safety"]["red_flag"]


def test_aligned_adapter_is_judged_beside_sft_and_swapped_pairs_are_refused(
    tmp_path, capsys, right_trained
):
    root = copy_project(right_trained, tmp_path / "right")  # trained once, with the gate test
    probes = (root / "data/eval/safety_probes.jsonl").read_text().splitlines()
    aligned = _stages(root, ("align", "evaluate"), ON)
    m = aligned.metrics
    assert set(m) >= {"base", "sft", "challenger"}
    cost = _rule(aligned, "safety_cost_of_alignment")
    assert cost.interval is not None and cost.interval.n == len(probes)
    state = json.loads((root / "models/aligned/align.json").read_text())
    assert state["align_method"] == "dpo" and len(state["preference_data_md5"]) == 32
    figures = {
        "aligned": {
            who: (_red_flags(aligned, who), m[who]["recall"]["correctness"])
            for who in ("sft", "challenger")
        },
        "aligned_decision": aligned.decision.failed,
    }

    _swap(root)
    shutil.rmtree(root / "models" / "aligned")
    swapped = _stages(
        root, ("align", "evaluate"), {**ON, "align.data": [{"path": SWAPPED, "format": "trl"}]}
    )
    figures["swapped"] = {
        who: (_red_flags(swapped, who), swapped.metrics[who]["recall"]["correctness"])
        for who in ("sft", "challenger")
    }
    figures["swapped_decision"] = swapped.decision.failed

    # ORPO (trl.experimental.orpo, no reference model) on the shipped pairs, through the same
    # stages: trained end to end, judged beside the SFT-only adapter like DPO.
    shutil.rmtree(root / "models" / "aligned")
    orpo = _stages(root, ("align", "evaluate"), {**ON, "align.method": "orpo"})
    orpo_state = json.loads((root / "models/aligned/align.json").read_text())
    assert orpo_state["align_method"] == "orpo"
    assert orpo_state["preference_data_md5"] == state["preference_data_md5"]
    assert _rule(orpo, "safety_cost_of_alignment").interval is not None
    figures["orpo"] = {
        who: (_red_flags(orpo, who), orpo.metrics[who]["recall"]["correctness"])
        for who in ("sft", "challenger")
    }
    figures["orpo_decision"] = orpo.decision.failed
    with capsys.disabled():
        print(f"\nalign figures: {json.dumps(figures, ensure_ascii=False)}")
    # Measured on a weaker SFT adapter (tiny.epochs 12, 2026-12-06): the swapped adapter did not
    # stop sending emergencies to 120; it degenerated elsewhere (loops, other questions'
    # answers) and was refused by repetition_rate and the gains over the base, not by an
    # alignment rule. The gate must refuse it, whichever rule does.
    assert not swapped.decision.promote, swapped.decision.failed
