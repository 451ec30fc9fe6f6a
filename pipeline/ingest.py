"""Stage `ingest`: read every source in `ingest.sources` (formats and encodings:
pipeline/sources.py) and normalize it into the project's conversations, each remembering where
it came from.

    python -m pipeline ingest      # params' sources -> data/ingested/{conversations,rejected}.jsonl

A record that cannot become a conversation goes to rejected.jsonl with its rule and reason
(personal data already replaced), and `validate` applies that rule's policy; nothing is dropped.
The report data/reports/ingest.json counts records, conversations and rejects per file.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pipeline.config import Config
from pipeline.io import atomic_dir, write_json, write_jsonl
from pipeline.sources import (  # noqa: F401 - the reading API, also under this stage's name
    FileResult,
    IngestError,
    conversation_id,
    normalize,
    read_file,
    read_sources,
    source_files,
)

log = logging.getLogger(__name__)


def run(cfg: Config) -> dict[str, Any]:
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
    summary = {
        "records": len(rows) + len(rejected),
        "conversations": len(rows),
        "rejected": len(rejected),
        "files": files,
    }
    write_json(paths.data_reports / "ingest.json", summary)
    log.info(
        "ingest: %d file(s), %d record(s): %d conversation(s), %d rejected (see %s)",
        len(files),
        summary["records"],
        len(rows),
        len(rejected),
        os.path.relpath(paths.rejected, cfg.root),
    )
    return summary
