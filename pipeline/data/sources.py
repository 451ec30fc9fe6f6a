"""Conversation sources: the bytes of files in any supported encoding and layout, read into the
project's conversations, each remembering where it came from. Used by the `ingest` stage
(pipeline/data/ingest.py), `validate FILE ...`, the evaluation sets and the lineage of `register`.

Layouts (per source, `format`): a JSON file is either a JSON array or JSON Lines (one object per
line), decided by its first character; each record becomes turns through the record formats of
data/formats.py (project, ShareGPT, OpenAI, conversation, Alpaca, or `auto`). CSV / TSV rows
are built here: the question from `question_columns` (stripped, empty cells skipped, joined by
`join`) and the answer from `answer_column`.

Encodings (`encoding`): utf-8 (a BOM is accepted), utf-8-sig, gbk, gb18030, or `auto`, which
tries UTF-8 and then GB18030 and logs which one it took. A file that decodes in none of them is
an IngestError naming the file, the byte offset and the line.

Every output row keeps `source` (the source id), `file` (relative to the project root) and
`line` (the line where the record starts; CSV rows count the header as line 1). A record that
cannot become a conversation (malformed JSON, missing or extra keys, a non-string content) is
not dropped: it goes to rejected.jsonl with its rule and reason, and `validate` applies that
rule's policy. Records read = rows + rejected, per file, checked here. A file without a single
record (0 bytes, whitespace, `[]`, a CSV header alone) is an IngestError.

Personal data (resident ID numbers with a valid check digit, mainland mobile numbers, e-mail
addresses) is replaced by typed placeholders here, before anything is written: in the turns, the
record's own id and a rejected record's `raw` text, so no DVC output or cache ever holds it.
A row keeps a masked note of what was replaced (`pii`), and validate applies the pii_* policies.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import SourceConfig
from pipeline.data import checks
from pipeline.data.formats import Problem, normalize
from pipeline.errors import IngestError, PipelineError

log = logging.getLogger(__name__)

AUTO_ENCODINGS = ("utf-8", "gb18030")
RAW_SHOWN = 500  # characters of an unparseable record kept for the quarantine


class Turns(list):
    """Turns a table row already built in the normalized shape (no JSON format to apply), with
    the row's `category_column` cell when the source declares one."""

    category: str | None = None


@dataclass
class FileResult:
    file: str
    encoding: str
    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


def conversation_id(turns: list[dict[str, str]]) -> str:
    """12 hex digits of a SHA-1 over the roles and contents (separators that text never holds:
    cheaper than hashing JSON, which at 100k conversations cost seconds)."""
    text = "\x1e".join(f"{t['role']}\x1f{t['content']}" for t in turns)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# --- bytes -> text ---------------------------------------------------------------------------


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes, encoding: str, shown: str) -> tuple[str, str]:
    """Text and the encoding used ("utf-8 with BOM" when it had one); `auto` tries UTF-8
    (BOM or not), then GB18030 (a superset of GBK)."""
    candidates = AUTO_ENCODINGS if encoding == "auto" else (encoding,)
    failures = []
    for name in candidates:
        codec = "utf-8-sig" if name == "utf-8" else name  # a BOM is never content
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            failures.append(
                f"{name} (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
                f"line {_line_of(data, exc.start)})"
            )
            continue
        used = name.replace("utf-8-sig", "utf-8")
        if codec == "utf-8-sig" and data.startswith(b"\xef\xbb\xbf"):
            used += " with BOM"
        if encoding == "auto":
            log.info("ingest: %s: encoding auto-detected as %s", shown, used)
        return text, used
    raise IngestError(f"{shown}: cannot be decoded as " + " nor as ".join(failures))


# --- files -----------------------------------------------------------------------------------


def _json_records(text: str, shown: str) -> Iterator[tuple[int, str, Any]]:
    """(line, raw text, parsed object or Problem) of a JSON array or a JSON Lines file."""
    body = text.lstrip()
    if body.startswith("["):
        yield from _json_array(text, shown)
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, line, json.loads(line)
        except json.JSONDecodeError as exc:
            yield (
                lineno,
                line,
                Problem("malformed_json", f"not valid JSON: {exc.msg} at column {exc.colno}"),
            )


def _json_array(text: str, shown: str) -> Iterator[tuple[int, str, Any]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    pos = skip(pos)
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise IngestError(
                f"{shown}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "a JSON array file must parse as a whole (JSON Lines isolates bad lines)"
            ) from None
        yield line, text[pos:end], obj
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            if pos < len(text) and text[pos] == "]":
                line += text.count("\n", counted, pos)
                raise IngestError(
                    f"{shown}:{line}: trailing comma before ']' (not JSON: remove the comma)"
                )
        elif pos >= len(text) or text[pos] != "]":
            line += text.count("\n", counted, pos)
            raise IngestError(f"{shown}:{line}: expected ',' or ']' between array elements")
    if pos >= len(text):
        raise IngestError(f"{shown}: JSON array is not closed with ']'")
    rest = skip(pos + 1)
    if rest < len(text):
        line = text.count("\n", 0, rest) + 1
        raise IngestError(f"{shown}:{line}: text after the closing ']' of the JSON array")


def _table_records(text: str, src: SourceConfig, shown: str) -> Iterator[tuple[int, str, Any]]:
    delimiter = "\t" if src.format == "tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None) or []
    header = [h.strip() for h in header]
    wanted = [*src.question_columns, src.answer_column]
    wanted += [src.category_column] if src.category_column else []
    missing = [c for c in wanted if c not in header]
    if missing:
        raise IngestError(
            f"{shown}:1: {src.format.upper()} header {header} has no column "
            f"{', '.join(map(repr, missing))} (source {src.id!r} needs question_columns "
            f"{list(src.question_columns)}"
            + (f", answer_column {src.answer_column!r}" if src.category_column else "")
            + (
                f" and category_column {src.category_column!r})"
                if src.category_column
                else f" and answer_column {src.answer_column!r})"
            )
        )
    index = {name: header.index(name) for name in wanted}
    start = reader.line_num + 1
    for cells in reader:
        lineno, start = start, reader.line_num + 1
        if not cells:
            continue
        raw = delimiter.join(cells)
        if len(cells) != len(header):
            yield (
                lineno,
                raw,
                Problem("schema", f"row has {len(cells)} field(s), the header has {len(header)}"),
            )
            continue
        # Spreadsheet cells: CRLF inside a quoted cell becomes \n, outer whitespace goes.
        cell = {name: cells[i].replace("\r\n", "\n").strip() for name, i in index.items()}
        question = src.join.join(cell[c] for c in src.question_columns if cell[c])
        answer = cell[src.answer_column]
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        row_turns = Turns(turns)
        row_turns.category = cell[src.category_column] if src.category_column else None
        yield lineno, raw, row_turns


def _scrub(text: str) -> str:
    return checks.redact_pii(text)[0]


def _redacted(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict]]:
    """Turns with personal data replaced by placeholders, and what was replaced (masked):
    [{"message": n, "rule": ..., "found": ...}] for validate to apply the rule's policy to."""
    out, pii = [], []
    for n, turn in enumerate(turns, 1):
        content, found = checks.redact_pii(turn["content"])
        out.append({"role": _scrub(turn["role"]), "content": content})
        pii += [{"message": n, "rule": rule, "found": what} for rule, what in found.items()]
    return out, pii


def read_file(path: Path, src: SourceConfig, shown: str) -> FileResult:
    """One file of a source: normalized rows and rejected records, each with file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{shown}: cannot read ({exc.strerror})") from None
    if not data.strip():
        raise IngestError(
            f"{shown}: empty file ({len(data)} bytes{', whitespace only' if data else ''}); a "
            "source file must hold at least one record (remove it or fix the export)"
        )
    text, encoding = decode(data, src.encoding, shown)
    table = src.format in ("csv", "tsv")
    records = _table_records(text, src, shown) if table else _json_records(text, shown)
    rows, rejected = [], []
    read = 0
    for lineno, raw, obj in records:
        read += 1
        where = {"source": src.id, "file": shown, "line": lineno}
        try:
            if isinstance(obj, Problem):
                raise obj
            turns, record_id = (obj, None) if isinstance(obj, Turns) else normalize(obj, src.format)
        except Problem as problem:
            rejected.append(
                {
                    **where,
                    "rule": problem.rule,
                    "reason": _scrub(problem.reason),
                    "raw": _scrub(raw)[:RAW_SHOWN],  # scrubbed first: never half a number
                }
            )
            continue
        turns, pii = _redacted(turns)
        row = {"id": conversation_id(turns), **where, "conversations": turns}
        if record_id is not None:
            row["record_id"] = _scrub(record_id)
        if getattr(obj, "category", None):
            row["category"] = _scrub(obj.category)
        if pii:
            row["pii"] = pii
        rows.append(row)
    if read == 0:
        what = "a header and no rows" if table else "no records (an empty JSON array)"
        raise IngestError(f"{shown}: holds {what}; a source file must hold at least one record")
    if read != len(rows) + len(rejected):  # every record is a row or a rejected one
        raise PipelineError(f"{shown}: {read} records read, {len(rows) + len(rejected)} kept")
    return FileResult(shown, encoding, rows, rejected)


def source_files(src: SourceConfig, root: Path) -> list[Path]:
    pattern = src.path if os.path.isabs(src.path) else str(root / src.path)
    files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not files:
        raise IngestError(f"source {src.id!r}: no file matches {src.path!r} (relative to {root})")
    return files


def read_sources(
    sources: tuple[SourceConfig, ...], root: Path, shown_from: Path
) -> list[FileResult]:
    """Every file of every source, in params order; a file claimed twice is an error."""
    results, owner = [], {}
    for src in sources:
        for path in source_files(src, root):
            shown = os.path.relpath(path, shown_from)
            if path.resolve() in owner:
                raise IngestError(
                    f"{shown}: matched by sources {owner[path.resolve()]!r} and {src.id!r}"
                )
            owner[path.resolve()] = src.id
            results.append(read_file(path, src, shown))
    return results
