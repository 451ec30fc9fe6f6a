"""A bad row stops validation with the rule and file:line, and nothing is written downstream."""

import json

import pytest

from pipeline import validate
from pipeline.config import load_config
from pipeline.errors import DataValidationError

GOOD = {
    "conversations": [{"role": "user", "content": "问？"}, {"role": "assistant", "content": "答。"}]
}


def _turns(*pairs):
    return {"conversations": [{"role": r, "content": c} for r, c in pairs]}


BAD = {
    "valid_json": '{"conversations": [',
    "structure": json.dumps({"messages": GOOD["conversations"]}),
    "known_roles": json.dumps(_turns(("user", "问"), ("doctor", "答"))),
    "alternation": json.dumps(_turns(("user", "问"), ("user", "又问"), ("assistant", "答"))),
    "ends_with_assistant": json.dumps(
        _turns(("user", "问"), ("assistant", "答"), ("user", "再问"))
    ),
    "non_empty_within_max_chars": json.dumps(_turns(("user", "问"), ("assistant", "   "))),
    "turn_count": json.dumps(_turns(("assistant", "答"))),
}


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_bad_row_is_named_with_file_and_line(project, rule):
    cfg = load_config(project / "params.yaml")
    path = project / "data" / "raw" / "bad.jsonl"
    path.write_text(
        json.dumps(GOOD, ensure_ascii=False) + "\n" + BAD[rule] + "\n", encoding="utf-8"
    )
    report = validate.check([path], cfg.validate_)
    assert rule in report.failures, report.text()
    assert all(w.split(" ")[0].endswith("bad.jsonl:2") for w in report.failures[rule])


def test_content_must_be_a_string(project):
    cfg = load_config(project / "params.yaml")
    path = project / "data" / "raw" / "bad.jsonl"
    path.write_text(json.dumps(_turns(("user", "问"), ("assistant", 3))) + "\n")
    report = validate.check([path], cfg.validate_)
    [where] = report.failures["structure"]
    assert where.endswith("bad.jsonl:1 (content is int, expected a string)")


def test_duplicates_are_found(project):
    cfg = load_config(project / "params.yaml")
    path = project / "data" / "raw" / "dup.jsonl"
    path.write_text((json.dumps(GOOD, ensure_ascii=False) + "\n") * 2)
    report = validate.check([path], cfg.validate_)
    assert [w.rsplit(":", 1)[1] for w in report.failures["no_duplicate_conversation"]] == ["1", "2"]


def test_system_prompt_first_is_allowed(project):
    cfg = load_config(project / "params.yaml")
    report = validate.check(sorted((project / "data" / "raw").glob("*.jsonl")), cfg.validate_)
    assert report.ok, report.text()
    assert report.conversations == len(report.rows) == 8


def test_failed_stage_writes_nothing_downstream(project):
    cfg = load_config(project / "params.yaml")
    (project / "data" / "raw" / "bad.jsonl").write_text(BAD["alternation"] + "\n")
    with pytest.raises(
        DataValidationError, match=r"alternation: 1 conversation\(s\): .*bad.jsonl:1"
    ):
        validate.run(cfg)
    assert not cfg.paths.validated.exists()
    summary = json.loads((cfg.paths.reports / "validation" / "summary.json").read_text())
    assert summary["passed"] is False and "alternation" in summary["failures"]
    assert (cfg.paths.reports / "validation" / "index.html").exists()  # GX Data Docs


def test_clean_data_is_written_with_source_and_line(project):
    cfg = load_config(project / "params.yaml")
    validate.run(cfg)
    rows = [json.loads(x) for x in cfg.paths.validated.read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 9))
    assert all(r["source"].endswith("conversations.jsonl") and len(r["id"]) == 12 for r in rows)
