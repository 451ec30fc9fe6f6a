"""Stage `ingest`: read every source in `ingest.sources` (formats and encodings:
pipeline/data/sources.py) and normalize it into the project's conversations, each remembering where
it came from.

    python -m pipeline ingest      # params' sources -> data/ingested/{conversations,rejected}.jsonl

A record that cannot become a conversation goes to rejected.jsonl with its rule and reason
(personal data already replaced), and `validate` applies that rule's policy; nothing is dropped.
The report data/reports/ingest.json counts records, conversations and rejects per file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

from pipeline.config import Config
from pipeline.data.sources import read_sources
from pipeline.io import atomic_dir, write_json, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What ingest read: records = conversations + rejected, and per file its encoding and
    counts (also data/reports/ingest.json)."""

    records: int
    conversations: int
    rejected: int
    files: dict[str, dict[str, int | str]]

    def __str__(self) -> str:
        return (
            f"ingest: {self.records} record(s) from {len(self.files)} file(s): "
            f"{self.conversations} conversation(s), {self.rejected} rejected"
        )


def run(cfg: Config) -> IngestResult:
    paths = cfg.paths
    results = read_sources(cfg.ingest.sources, cfg.root, cfg.root)
    rows = [row for r in results for row in r.rows]
    rejected = [rec for r in results for rec in r.rejected]
    files = {
        r.file: {"encoding": r.encoding, "conversations": len(r.rows), "rejected": len(r.rejected)}
        for r in results
    }
    with atomic_dir(paths.ingested_dir) as tmp:  # both files appear together, or neither
        write_jsonl(tmp / paths.ingested.name, rows)
        write_jsonl(tmp / paths.rejected.name, rejected)
    result = IngestResult(len(rows) + len(rejected), len(rows), len(rejected), files)
    write_json(paths.data_reports / "ingest.json", asdict(result))
    log.info("%s (see %s)", result, os.path.relpath(paths.rejected, cfg.root))
    return result
