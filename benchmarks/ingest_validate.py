"""Ingest + validate throughput at scale: the real corpus replicated to 100,000 conversations.

    python benchmarks/ingest_validate.py [--corpus PATH] [--n 100000]

Writes a GB18030 CSV of N rows (copies of the corpus, each copy's titles tagged with its number
so that copies are not duplicates of each other; the corpus' own 358 duplicates repeat in every
copy) into a temporary project, then runs the `ingest` and `validate` stages exactly as
`dvc repro` does (GX suite, Data Docs, quarantine, MLflow run). Nothing is written to the repo.
The last line is the headline: conversations per second and total seconds.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "cmd_internal_medicine.csv"


def replicate(corpus: Path, n: int, out: Path) -> None:
    rows = list(csv.reader(io.StringIO(corpus.read_bytes().decode("gb18030"), newline="")))
    header, body = rows[0], rows[1:]
    title = header.index("title")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for i in range(n):
        row = list(body[i % len(body)])
        row[title] = f"{row[title]}（{i // len(body)}）"
        writer.writerow(row)
    out.write_bytes(buf.getvalue().encode("gb18030"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("CMD_CORPUS", DEFAULT)))
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"{args.corpus}: not found (the shared real corpus; --corpus PATH)")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    sys.path.insert(0, str(REPO))
    from pipeline.environment import offline_env

    offline_env(hub_offline=True)
    w0, c0 = time.perf_counter(), time.process_time()
    import great_expectations  # noqa: F401  (imported lazily by validate; timed apart)

    import mlflow  # noqa: F401
    from pipeline import run_stage
    from pipeline.config import load_config

    imports = (time.perf_counter() - w0, time.process_time() - c0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data" / "raw").mkdir(parents=True)
        replicate(args.corpus, args.n, root / "data" / "raw" / "corpus.csv")
        params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params["ingest"]["sources"] = [
            {
                "id": "cmd",
                "path": "data/raw/corpus.csv",
                "format": "csv",
                "encoding": "auto",
                "question_columns": ["title", "ask"],
                "answer_column": "answer",
            }
        ]
        params["validate"]["max_quarantine_fraction"] = 0.1
        (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        cfg = load_config(root / "params.yaml")
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        ingested = run_stage("ingest", cfg)
        t1, c1 = time.perf_counter(), time.process_time()
        result = run_stage("validate", cfg)
        t2, c2 = time.perf_counter(), time.process_time()
    total = t2 - t0
    # On a shared machine wall time depends on the neighbours; CPU time of this process does not.
    print(
        f"cores: {os.cpu_count()}, load average at start: {load:.2f}, end: {os.getloadavg()[0]:.2f}"
    )
    print(f"ingest:   {ingested.records:,} records in {t1 - t0:.2f} s ({c1 - c0:.2f} s CPU)")
    print(
        f"validate: {result.kept:,} kept, {result.quarantined:,} quarantined "
        f"in {t2 - t1:.2f} s ({c2 - c1:.2f} s CPU; GX suite, Data Docs, quarantine, MLflow run)"
    )
    print(
        f"imports (GX, MLflow; paid once per process): {imports[0]:.2f} s ({imports[1]:.2f} s CPU)"
    )
    print(
        f"{args.n:,} conversations: {args.n / total:,.0f} conversations/s, {total:.1f} s for "
        f"ingest + validate ({c2 - c0:.1f} s CPU; {total + imports[0]:.1f} s with the imports)"
    )


if __name__ == "__main__":
    main()
