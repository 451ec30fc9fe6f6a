"""Ingest: every format and encoding normalizes to the same conversations, with source, file and
line; unreadable sources are errors that name the file; the real corpus is fully accounted for."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.data import formats, ingest, sources, validate
from pipeline.errors import ConfigError, IngestError
from tests.conftest import ASSETS, REPO, make_project

FORMATS = ASSETS / "formats"
SYSTEM = "你是一名耐心的全科医生。"
MULTI = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "孩子发烧38度要紧吗？"},
    {"role": "assistant", "content": "先物理降温，多喝水，超过38.5度可用退烧药。"},
    {"role": "user", "content": "晚上又烧起来了怎么办？"},
    {"role": "assistant", "content": "反复高烧或精神差要及时就医。"},
]
SINGLE = [
    {"role": "user", "content": "胃胀气吃什么好？"},
    {"role": "assistant", "content": "少食多餐，少吃豆类和碳酸饮料。"},
]
TABLE = {"question_columns": ("title", "ask"), "answer_column": "answer", "join": ""}
REAL = Path(
    os.environ.get("CMD_CORPUS", REPO.parent / "shared" / "data" / "cmd_internal_medicine.csv")
)


def _read(name: str, fmt: str, encoding: str = "auto", **table) -> sources.FileResult:
    src = SourceConfig(id="t", path="-", format=fmt, encoding=encoding, **table)
    return sources.read_file(FORMATS / name, src, name)


# file, format, declared encoding, expected (line, conversation) pairs, encoding found
CASES = [
    ("project.jsonl", "project", "utf-8", [(1, MULTI), (2, SINGLE)], "utf-8"),
    ("project_bom.jsonl", "project", "utf-8", [(1, MULTI), (2, SINGLE)], "utf-8 with BOM"),
    ("project_gb18030.jsonl", "project", "gb18030", [(1, MULTI), (2, SINGLE)], "gb18030"),
    ("project_gb18030.jsonl", "project", "gbk", [(1, MULTI), (2, SINGLE)], "gbk"),
    ("sharegpt.json", "sharegpt", "utf-8", [(2, MULTI), (26, SINGLE)], "utf-8"),
    ("openai.jsonl", "openai", "utf-8", [(1, MULTI), (2, SINGLE)], "utf-8"),
    ("conversation.jsonl", "conversation", "utf-8", [(1, MULTI), (2, SINGLE)], "utf-8"),
    ("alpaca.json", "alpaca", "utf-8", [(2, MULTI), (14, SINGLE)], "utf-8"),
    ("table.csv", "csv", "utf-8", [(2, SINGLE)], "utf-8"),
    ("table.tsv", "tsv", "utf-8-sig", [(2, SINGLE)], "utf-8 with BOM"),
]


@pytest.mark.parametrize(("name", "fmt", "encoding", "expected", "found"), CASES)
def test_every_format_and_encoding_gives_the_same_conversations(
    name, fmt, encoding, expected, found
):
    table = TABLE if fmt in ("csv", "tsv") else {}
    for declared in (encoding, "auto"):
        result = _read(name, fmt, declared, **table)
        assert [(r["line"], r["conversations"]) for r in result.rows] == expected
        assert result.rejected == []
    assert _read(name, fmt, encoding, **table).encoding == found
    assert all(r["source"] == "t" and r["file"] == name for r in result.rows)
    # the same conversation gets the same id whatever it was read from
    assert result.rows[-1]["id"] == sources.conversation_id(SINGLE)


@pytest.mark.parametrize("name", ["project.jsonl", "sharegpt.json", "openai.jsonl", "alpaca.json"])
def test_auto_format_detects_each_json_format(name):
    rows = _read(name, "auto").rows
    assert [r["conversations"] for r in rows] == [MULTI, SINGLE]
    assert rows[1]["record_id"] == "c2"


def test_auto_encoding_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline"):
        _read("project_gb18030.jsonl", "project")
    assert "ingest: project_gb18030.jsonl: encoding auto-detected as gb18030" in caplog.text


def test_a_declared_encoding_that_does_not_fit_names_offset_and_line():
    with pytest.raises(IngestError) as err:
        _read("project_gb18030.jsonl", "project", "utf-8")
    assert str(err.value) == (
        "project_gb18030.jsonl: cannot be decoded as utf-8 (byte 0xc4 at offset 50, line 1)"
    )


def test_alpaca_input_joins_the_instruction_and_sharegpt_system_key_leads():
    obj = {"instruction": "胃胀气", "input": "吃什么好？", "output": "少食多餐。"}
    assert formats.normalize(obj, "alpaca")[0][0]["content"] == "胃胀气\n吃什么好？"
    sg = {"system": SYSTEM, "conversations": [{"from": "human", "value": "问"}]}
    assert formats.normalize(sg, "sharegpt")[0][0] == {"role": "system", "content": SYSTEM}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"messages": []},\n {"messages": [', "bad.json:2: not valid JSON (Expecting value"),
        ('[{"messages": []}\n {"messages": []}]', "bad.json:2: expected ',' or ']' between"),
        ('[{"messages": []}, ', "bad.json: JSON array is not closed with ']'"),
    ],
)
def test_a_broken_json_array_is_an_error_with_its_line(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text, encoding="utf-8")
    src = SourceConfig(id="t", path="-", format="openai", encoding="utf-8")
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace("[", r"\[")):
        sources.read_file(tmp_path / "bad.json", src, "bad.json")


def test_a_csv_without_the_configured_columns_is_an_error():
    src = SourceConfig(
        id="t",
        path="-",
        format="csv",
        encoding="auto",
        question_columns=("q",),
        answer_column="answer",
    )
    with pytest.raises(IngestError) as err:
        sources.read_file(FORMATS / "table.csv", src, "table.csv")
    assert str(err.value) == (
        "table.csv:1: CSV header ['department', 'title', 'ask', 'answer'] has no column 'q' "
        "(source 't' needs question_columns ['q'] and answer_column 'answer')"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"format": "csv"}, "format csv needs question_columns"),
        ({"format": "project", "answer_column": "a"}, "are for csv and tsv only"),
        ({"format": "xml"}, "Input should be 'auto', 'project'"),
        ({"encoding": "latin-1"}, "Input should be 'auto', 'utf-8'"),
    ],
)
def test_sources_are_checked_when_params_load(source, message):
    base = {"id": "s", "path": "data/raw/x", "format": "project", "encoding": "utf-8"}
    with pytest.raises(ConfigError, match=f"ingest.sources.*{message}"):
        load_config(REPO / "params.yaml", {"ingest.sources": [base | source]})


def test_stage_writes_conversations_and_rejects_with_their_sources(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "data" / "raw" / "extra.jsonl").write_text('{"conversations": 1}\n', encoding="utf-8")
    (root / "data" / "raw" / "table.csv").write_bytes((FORMATS / "table_gb18030.csv").read_bytes())
    sources = [
        {"id": "project", "path": "data/raw/*.jsonl", "format": "project", "encoding": "utf-8"},
        {
            "id": "table",
            "path": "data/raw/table.csv",
            "format": "csv",
            "encoding": "auto",
            "question_columns": ["title", "ask"],
            "answer_column": "answer",
        },
    ]
    cfg = load_config(root / "params.yaml", {"ingest.sources": sources})
    summary = ingest.run(cfg)
    assert (summary.records, summary.conversations, summary.rejected) == (14, 13, 1)
    assert str(summary) == "ingest: 14 record(s) from 3 file(s): 13 conversation(s), 1 rejected"
    assert summary.files["data/raw/table.csv"] == {
        "encoding": "gb18030",
        "conversations": 5,
        "rejected": 0,
    }
    rows = [json.loads(x) for x in cfg.paths.ingested.read_text().splitlines()]
    assert [(r["source"], r["file"], r["line"]) for r in rows[-5:]] == [
        ("table", "data/raw/table.csv", n) for n in (2, 3, 5, 6, 7)
    ]
    assert rows[-4]["conversations"] == [
        {"role": "user", "content": "血压偏高\n早上量140/90,要吃药吗？"},
        {"role": "assistant", "content": "先连续测量一周。\n如果一直偏高，请到医院就诊。"},
    ]
    [rejected] = [json.loads(x) for x in cfg.paths.rejected.read_text().splitlines()]
    assert rejected == {
        "source": "project",
        "file": "data/raw/extra.jsonl",
        "line": 1,
        "rule": "schema",
        "reason": "'conversations' is int, expected a non-empty list of messages",
        "raw": '{"conversations": 1}',
    }


def test_missing_source_and_doubly_claimed_file_are_errors(tmp_path):
    root = make_project(tmp_path / "p")
    src = {"id": "a", "path": "data/raw/none*.jsonl", "format": "project", "encoding": "utf-8"}
    with pytest.raises(IngestError, match="source 'a': no file matches 'data/raw/none\\*.jsonl'"):
        ingest.run(load_config(root / "params.yaml", {"ingest.sources": [src]}))
    twice = [src | {"path": "data/raw/*.jsonl"}, src | {"id": "b", "path": "data/raw/*"}]
    with pytest.raises(IngestError, match="matched by sources 'a' and 'b'"):
        ingest.run(load_config(root / "params.yaml", {"ingest.sources": twice}))


def test_synthetic_gb18030_csv_accounts_for_every_row(tmp_path, monkeypatch):
    """A GB18030 CSV like the real corpus (written for this test): 5 rows in, 4 kept and the
    repeated one quarantined as a duplicate."""
    monkeypatch.setattr(validate, "_log_to_mlflow", lambda *a: None)
    root = make_project(tmp_path / "p", rows=[])
    (root / "data" / "raw" / "conversations.jsonl").unlink()
    (root / "data" / "raw" / "t.csv").write_bytes((FORMATS / "table_gb18030.csv").read_bytes())
    source = {
        "id": "t",
        "path": "data/raw/t.csv",
        "format": "csv",
        "encoding": "gb18030",
        "question_columns": ["title", "ask"],
        "answer_column": "answer",
    }
    cfg = load_config(
        root / "params.yaml",
        {"ingest.sources": [source], "validate.max_quarantine_fraction": 0.25},
    )
    ingest.run(cfg)
    result = validate.run(cfg)
    assert result == validate.ValidateResult(
        conversations_in=5, kept=4, quarantined=1, redacted_conversations=0
    )
    [q] = [json.loads(x) for x in cfg.paths.quarantine.read_text().splitlines()]
    assert (q["rule"], q["reason"], q["line"]) == (
        "duplicate",
        "same conversation as data/raw/t.csv:2",
        5,
    )


@pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} not present (the shared real corpus)")
def test_real_corpus_accounts_for_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "_log_to_mlflow", lambda *a: None)
    monkeypatch.chdir(tmp_path)
    src = SourceConfig(
        id="cmd",
        path="-",
        format="csv",
        encoding="auto",
        question_columns=("title", "ask"),
        answer_column="answer",
    )
    result = sources.read_file(REAL, src, "cmd.csv")
    assert result.encoding == "gb18030"
    assert len(result.rows) + len(result.rejected) == 7124
    cfg = load_config(REPO / "params.yaml", {"validate.max_quarantine_fraction": 0.1})
    outcome = validate.evaluate(result.rows, result.rejected, ["cmd.csv"], cfg, None)
    assert len(outcome.kept) + len(outcome.quarantined) == 7124
    # 358 repeated rows, as the corpus' README says; two answers over 512 estimated tokens
    assert {rule: len(h) for rule, h in outcome.hits.items()} == {"duplicate": 358, "too_long": 2}
    assert outcome.passed and all(q["reason"] for q in outcome.quarantined)
