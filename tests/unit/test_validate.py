"""Validation: a catalogue of bad inputs, each named by rule, exact reason and file:line; the
policies (fail, quarantine, redact, warn); the stage's outputs, quarantine and reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.data import ingest, sources, validate, validation_report
from pipeline.errors import ConfigError, DataValidationError
from tests.conftest import REPO

GOOD = [("user", "感冒了怎么办？"), ("assistant", "多休息，多喝水。")]
AUTO = SourceConfig(id="cli", path="-", format="auto", encoding="auto")
ID_OK = "11010519491231002X"  # a valid MOD 11-2 check digit (the GB 11643 example)
ID_BAD = "110105194912310021"  # same digits, wrong check digit


def _conv(*turns, key="conversations", role="role", text="content"):
    return json.dumps({key: [{role: r, text: c} for r, c in turns]}, ensure_ascii=False)


@pytest.fixture(autouse=True)
def _no_mlflow(monkeypatch):
    """MLflow logging is covered by the e2e test; here it would only cost seconds."""
    calls = []
    monkeypatch.setattr(validate, "_log_to_mlflow", lambda cfg, out, d: calls.append(out))
    return calls


# kind -> (second line of bad.jsonl, param overrides, rule, reason). Line 1 is always GOOD.
CATALOGUE = {
    "malformed_json": (
        '{"conversations": [',
        {},
        "malformed_json",
        "not valid JSON: Expecting value at column 20",
    ),
    "not_an_object": ("[1, 2]", {}, "schema", "a record is list, expected a JSON object"),
    "no_conversation_key": (
        '{"dialog": []}',
        {},
        "schema",
        "no conversation found: expected a key conversations, messages, conversation or "
        "instruction",
    ),
    "extra_key": (
        _conv(*GOOD)[:-1] + ', "lang": "zh"}',
        {},
        "schema",
        "unexpected key 'lang' (project format: conversations (optional: id))",
    ),
    "empty_conversation": (
        '{"conversations": []}',
        {},
        "schema",
        "'conversations' is an empty list, expected a non-empty list of messages",
    ),
    "message_keys": (
        _conv(*GOOD, text="text"),
        {},
        "schema",
        "message 1 has keys ['role', 'text'], expected exactly ['content', 'role']",
    ),
    "content_not_string": (
        json.dumps(
            {
                "conversations": [
                    {"role": "user", "content": "问"},
                    {"role": "assistant", "content": 3},
                ]
            }
        ),
        {},
        "content_type",
        "message 2: content is int, expected a string",
    ),
    "unknown_role": (
        _conv(("user", "问"), ("doctor", "答"), ("user", "再问"), ("assistant", "答")),
        {},
        "known_roles",
        "message 2: role 'doctor', expected one of system, user, assistant",
    ),
    "sharegpt_unknown_from": (
        _conv(
            ("human", "问"),
            ("doctor", "答"),
            ("human", "再问"),
            ("gpt", "答"),
            role="from",
            text="value",
        ),
        {},
        "known_roles",
        "message 2: role 'doctor', expected one of system, user, assistant",
    ),
    "two_user_turns": (
        _conv(("user", "问"), ("user", "又问"), ("assistant", "答")),
        {},
        "alternation",
        "message 2: role 'user', expected 'assistant' (an optional system message, then user "
        "and assistant alternating, starting with the user)",
    ),
    "starts_with_assistant": (
        _conv(("assistant", "你好"), ("user", "问"), ("assistant", "答")),
        {},
        "alternation",
        "message 1: role 'assistant', expected 'user' (an optional system message, then user "
        "and assistant alternating, starting with the user)",
    ),
    "system_in_the_middle": (
        _conv(("user", "问"), ("system", "规则"), ("assistant", "答")),
        {},
        "alternation",
        "message 2: role 'system', expected 'assistant' (an optional system message, then "
        "user and assistant alternating, starting with the user)",
    ),
    "ends_with_user": (
        _conv(("user", "问"), ("assistant", "答"), ("user", "再问")),
        {},
        "ends_with_assistant",
        "last message is from 'user', expected the assistant",
    ),
    "whitespace_turn": (
        _conv(("user", "问"), ("assistant", " \u3000\n")),
        {},
        "empty_turn",
        "message 2 (assistant) is empty or whitespace only",
    ),
    "turn_too_long": (
        _conv(("user", "问"), ("assistant", "长" * 11)),
        {"validate.max_chars": 10},
        "max_chars",
        "message 2 (assistant) has 11 characters, more than validate.max_chars 10",
    ),
    "too_many_turns": (
        _conv(*GOOD, *GOOD),
        {"validate.max_turns": 3},
        "turn_count",
        "4 message(s), expected 2 to 3 (validate.max_turns)",
    ),
    "over_max_seq_len": (
        _conv(("user", "问"), ("assistant", "很" * 40)),
        {"preprocess.max_seq_len": 50},
        "too_long",
        "about 71 tokens (estimated at 1 characters per token), more than "
        "preprocess.max_seq_len 50: would be truncated",
    ),
    "exact_duplicate": (
        _conv(*GOOD),
        {},
        "duplicate",
        "same conversation as bad.jsonl:1",
    ),
    "near_duplicate": (
        _conv(("user", "感冒了，怎么办?"), ("assistant", "多休息 多喝水")),
        {},
        "near_duplicate",
        "same text as bad.jsonl:1 once case, punctuation and whitespace are ignored (NFKC)",
    ),
    "mojibake_replacement_char": (
        _conv(("user", "头痛\ufffd怎么办"), ("assistant", "答")),
        {},
        "mojibake",
        "message 1: mojibake '\ufffd' (text decoded with the wrong encoding)",
    ),
    "mojibake_kunjinkao": (
        _conv(("user", "问"), ("assistant", "锟斤拷锟斤拷")),
        {},
        "mojibake",
        "message 2: mojibake '锟斤拷' (text decoded with the wrong encoding)",
    ),
    "mojibake_latin1": (
        _conv(("user", "æ„Ÿå†’æ€Žä¹ˆåŠž"), ("assistant", "答")),
        {},
        "mojibake",
        "message 1: mojibake 'æ„' (text decoded with the wrong encoding)",
    ),
    "control_character": (
        _conv(("user", "问\x07题"), ("assistant", "答")),
        {},
        "control_chars",
        "message 1: control character U+0007 at character 2",
    ),
}
# Personal data: found (masked in the report) and redacted by default, so the run stays clean.
PII = {
    "resident_id": (
        f"我的身份证号是{ID_OK}",
        "pii_id_number",
        "resident ID number 110105********002X",
        "我的身份证号是[身份证号]",
    ),
    "mobile": (
        "电话13812345678找我",
        "pii_mobile",
        "mobile number 138****5678",
        "电话[手机号]找我",
    ),
    "email": (
        "发到 li.ming@example.com 吧",
        "pii_email",
        "e-mail address l***@example.com",
        "发到 [邮箱] 吧",
    ),
}


def _check(tmp_path, monkeypatch, line: str, overrides: dict | None = None):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text(_conv(*GOOD) + "\n" + line + "\n", encoding="utf-8")
    cfg = load_config(REPO / "params.yaml", overrides)
    return validate.check_files([tmp_path / "bad.jsonl"], cfg, AUTO)


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_catalogue_of_bad_inputs(tmp_path, monkeypatch, kind):
    line, overrides, rule, reason = CATALOGUE[kind]
    outcome = _check(tmp_path, monkeypatch, line, overrides)
    assert outcome.hits == {rule: [("bad.jsonl:2", reason)]}, validation_report.text(outcome)
    expect_clean = outcome.policies[rule] == "warn"
    assert outcome.clean is expect_clean
    assert outcome.conversations_in == 2 == len(outcome.kept) + len(outcome.quarantined)


@pytest.mark.parametrize("kind", sorted(PII))
def test_personal_data_is_found_masked_and_redacted(tmp_path, monkeypatch, kind):
    text, rule, finding, redacted = PII[kind]
    outcome = _check(tmp_path, monkeypatch, _conv(("user", text), ("assistant", "好的。")))
    assert outcome.hits == {rule: [("bad.jsonl:2", f"message 1: {finding}")]}
    assert outcome.clean and outcome.redacted == 1
    assert outcome.kept[1]["conversations"][0]["content"] == redacted


def test_lookalikes_are_not_personal_data_or_mojibake(tmp_path, monkeypatch):
    text = f"化验单号{ID_BAD}，订单0213812345678901，血小板138123456789个，38.5°C···"
    outcome = _check(tmp_path, monkeypatch, _conv(("user", text), ("assistant", "好的。")))
    assert outcome.hits == {} and outcome.clean


def test_a_csv_row_with_the_wrong_number_of_fields_is_quarantined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("title,answer\n问,答\n只有一个字段\n", encoding="utf-8")
    source = SourceConfig(
        id="t",
        path="-",
        format="csv",
        encoding="utf-8",
        question_columns=("title",),
        answer_column="answer",
    )
    outcome = validate.check_files([tmp_path / "t.csv"], load_config(REPO / "params.yaml"), source)
    assert outcome.hits == {"schema": [("t.csv:3", "row has 1 field(s), the header has 2")]}
    [quarantined] = outcome.quarantined
    assert quarantined["raw"] == "只有一个字段" and quarantined["line"] == 3


def test_fail_policy_and_warn_policy(tmp_path, monkeypatch):
    line = _conv(("user", "问"), ("assistant", "答"), ("user", "再问"))
    failing = _check(tmp_path, monkeypatch, line, {"validate.policies.ends_with_assistant": "fail"})
    assert failing.failed_rules == ["ends_with_assistant"] and not failing.passed
    warned = _check(tmp_path, monkeypatch, line, {"validate.policies.ends_with_assistant": "warn"})
    assert warned.passed and warned.clean and len(warned.kept) == 2


@pytest.mark.parametrize(
    ("rule", "policy", "message"),
    [
        ("duplicate", "redact", "duplicate: policy 'redact' is only for personal data"),
        ("malformed_json", "warn", "malformed_json: policy 'warn' would keep a record"),
        ("mojibake", "drop", "Input should be 'fail', 'quarantine', 'redact' or 'warn'"),
    ],
)
def test_policies_are_checked_when_params_load(rule, policy, message):
    with pytest.raises(ConfigError, match=f"validate.policies.*{message}"):
        load_config(REPO / "params.yaml", {f"validate.policies.{rule}": policy})


def test_undecodable_file_names_file_offset_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_bytes(_conv(*GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(sources.IngestError) as err:
        validate.check_files([tmp_path / "x.jsonl"], load_config(REPO / "params.yaml"), AUTO)
    assert str(err.value) == (
        "x.jsonl: cannot be decoded as utf-8 (byte 0xff at offset 136, line 2) nor as "
        "gb18030 (byte 0x80 at offset 58, line 1)"
    )


# --- the stage -------------------------------------------------------------------------------


def _stage(project, rows_text: str, overrides: dict | None = None):
    from pipeline.config import load_config as load

    (project / "data" / "raw" / "extra.jsonl").write_text(rows_text, encoding="utf-8")
    cfg = load(project / "params.yaml", overrides)
    ingest.run(cfg)
    return cfg


def test_quarantine_over_the_limit_fails_and_writes_nothing_downstream(project, _no_mlflow):
    bad = _conv(("user", "问"), ("user", "又问"), ("assistant", "答"))
    cfg = _stage(project, bad + "\n")
    with pytest.raises(
        DataValidationError, match=r"(?s)alternation \[quarantine\]: 1 .*extra.jsonl:1"
    ):
        validate.run(cfg)
    assert not cfg.paths.validated.exists()
    [q] = [json.loads(x) for x in cfg.paths.quarantine.read_text().splitlines()]
    assert (q["rule"], q["file"], q["line"], q["source"]) == (
        "alternation",
        "data/raw/extra.jsonl",
        1,
        "project",
    )
    assert q["reason"].startswith("message 2: role 'user', expected 'assistant'")
    summary = json.loads((cfg.paths.validation_reports / "summary.json").read_text())
    assert summary["passed"] is False and summary["rules"]["alternation"]["count"] == 1
    assert summary["rules"]["alternation"]["examples"][0]["where"] == "data/raw/extra.jsonl:1"
    assert (cfg.paths.validation_reports / "index.html").exists()  # GX Data Docs
    assert (
        "| `alternation` | quarantine | 1 |"
        in (cfg.paths.validation_reports / "summary.md").read_text()
    )
    assert _no_mlflow[0].passed is False  # a failed validation is logged too


def test_quarantine_under_the_limit_passes_and_counts_add_up(project):
    lines = [
        _conv(("user", "问"), ("user", "又问"), ("assistant", "答")),
        '{"conversations": [',
        _conv(("user", "电话13812345678"), ("assistant", "收到。")),
    ]
    cfg = _stage(project, "\n".join(lines) + "\n", {"validate.max_quarantine_fraction": 0.5})
    result = validate.run(cfg)
    assert result == validate.ValidateResult(
        conversations_in=11, kept=9, quarantined=2, redacted_conversations=1
    )
    assert str(result) == "validate: 11 checked, 9 kept, 2 quarantined, 1 redacted"
    kept = [json.loads(x) for x in cfg.paths.validated.read_text().splitlines()]
    assert len(kept) == 9 and kept[-1]["conversations"][0]["content"] == "电话[手机号]"
    assert kept[0]["source"] == "project" and kept[0]["file"].endswith("conversations.jsonl")
    quarantined = [json.loads(x) for x in cfg.paths.quarantine.read_text().splitlines()]
    assert [(q["rule"], q["line"]) for q in quarantined] == [
        ("alternation", 1),
        ("malformed_json", 2),
    ]
    assert quarantined[1]["raw"] == '{"conversations": ['


def test_clean_data_is_written_with_source_file_and_line(project):
    cfg = load_config(project / "params.yaml")
    ingest.run(cfg)
    validate.run(cfg)
    rows = [json.loads(x) for x in cfg.paths.validated.read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 9))
    assert {r["file"] for r in rows} == {"data/raw/conversations.jsonl"}
    assert all(r["source"] == "project" and len(r["id"]) == 12 for r in rows)
    assert cfg.paths.quarantine.read_text() == ""


def test_cli_checks_files_without_touching_pipeline_state(tmp_path):
    (tmp_path / "good.jsonl").write_text(_conv(*GOOD) + "\n", encoding="utf-8")
    (tmp_path / "bad.json").write_text(
        json.dumps([{"messages": [{"role": "user", "content": "问"}]}]), encoding="utf-8"
    )
    cmd = [sys.executable, "-m", "pipeline", "-p", str(REPO / "params.yaml"), "validate"]
    good = subprocess.run([*cmd, "good.jsonl"], cwd=tmp_path, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "known_roles [quarantine]: 0 conversation(s)" in good.stdout
    bad = subprocess.run([*cmd, "bad.json"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 3
    assert (
        "ends_with_assistant [quarantine]: 1 conversation(s)\n  bad.json:1: last message"
        in bad.stdout
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "good.jsonl"]
