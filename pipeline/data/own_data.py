"""Start from your own conversations: one command points the pipeline at your file.

    python -m pipeline own-data data/raw/my.csv --format csv --encoding gb18030 \\
        --question-columns title,ask --answer-column answer --category-column department

1. The file is read the way `ingest` will read it (format, encoding, columns): a file that
   cannot be read is an error naming file:line, and params.yaml stays as it was.
2. params.yaml is rewritten in place, comments kept (ruamel.yaml round trip):
   - `ingest.sources`: your file is the only source. The project's demo conversations are
     NOT mixed in: they teach a stock deferral that the gate would otherwise have to see
     through. `--keep-demo` keeps them as a second source, an explicit choice that the
     evaluation report names on its "Trained on" line;
   - `evaluate.sets`: [] (the demo's recall and unseen-topic sets ask about the demo's facts;
     kept with `--keep-demo`); the safety probes stay: they fit any medical assistant;
   - `evaluate.gate.primary_set`: `test.<id>`, your source's held-out questions (a seeded
     sample stratified by `--category-column`, pipeline/evaluation/evalsets.py);
   - `split.always_train`: [] (the demo's example questions), unless `--keep-demo`;
   - `evaluate.semantic`: true (free-text answers: an embedding similarity that is checked,
     like every metric, for whether it can judge your references; pipeline/evaluation/semantic.py);
   - `validate.max_quarantine_fraction`: only when `--max-quarantine` is given.
3. It prints what changed and the next commands (`dvc add`, `dvc repro`).

The file must lie under data/raw/: that folder is the `ingest` stage's dependency, so DVC
notices when the file changes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import SourceConfig, load_config
from pipeline.errors import ConfigError

RAW = Path("data/raw")
DEMO_SOURCE = {
    "id": "project",
    "path": "data/raw/medical_dialogues.jsonl",
    "format": "project",
    "encoding": "utf-8",
}


@dataclass(frozen=True)
class OwnDataResult:
    source: SourceConfig
    conversations: int
    changes: list[str]
    notes: list[str]

    def __str__(self) -> str:
        lines = [f"own-data: {self.source.path}: {self.conversations} conversations read"]
        lines += [f"  params.yaml: {c}" for c in self.changes]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [
            "next:",
            f"  dvc add {self.source.path} && git add {self.source.path}.dvc params.yaml",
            "  dvc repro",
        ]
        return "\n".join(lines)


def _source(root: Path, file: Path, options: dict) -> SourceConfig:
    path = (file if file.is_absolute() else Path.cwd() / file).resolve()
    raw = (root / RAW).resolve()
    if not path.is_relative_to(raw):
        raise ConfigError(
            f"{file}: copy it under {RAW}/ first (the ingest stage depends on {RAW}/, so DVC "
            "notices when the file changes)"
        )
    if not path.is_file():
        raise ConfigError(f"{file}: not found")
    fields = {k: v for k, v in options.items() if v not in (None, (), "")}
    try:
        return SourceConfig(
            id=options["id"],
            path=path.relative_to(root).as_posix(),
            **{k: v for k, v in fields.items() if k != "id"},
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"{file}: {exc}") from None


def params_yaml():
    """A ruamel round-trip YAML in params.yaml's own style (comments and layout kept)."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.width = 100
    y.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own style
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return y


def run(
    params: Path,
    file: Path,
    options: dict,
    keep_demo: bool = False,
    max_quarantine: float | None = None,
) -> OwnDataResult:
    """Point params.yaml at `file` (see the module docstring). `options`: id, format,
    encoding, question_columns, answer_column, category_column, join."""
    from pipeline.data.sources import read_file

    params = params.resolve()
    root = params.parent
    src = _source(root, file, options)
    result = read_file(root / src.path, src, src.path)
    if not result.rows:
        bad = result.rejected[0]
        raise ConfigError(
            f"{bad['file']}:{bad['line']}: {bad['reason']} (not one of "
            f"{len(result.rejected)} record(s) reads as a conversation with these options; "
            "params.yaml unchanged)"
        )
    y = params_yaml()
    tree = y.load(params.read_text(encoding="utf-8"))
    entry = src.model_dump(exclude_defaults=True)
    entry["question_columns"] = list(src.question_columns) if src.question_columns else None
    entry = {k: v for k, v in entry.items() if v is not None}
    sources = [entry] + ([DEMO_SOURCE] if keep_demo else [])
    tree["ingest"]["sources"] = sources
    changes = [f"ingest.sources: {', '.join(s['id'] for s in sources)}"]
    if not keep_demo:
        tree["evaluate"]["sets"] = []
        tree["split"]["always_train"] = []
        changes += ["evaluate.sets: [] (the demo's sets)", "split.always_train: []"]
    tree["evaluate"]["gate"]["primary_set"] = f"test.{src.id}"
    tree["evaluate"]["semantic"] = True
    changes += [f"evaluate.gate.primary_set: test.{src.id}", "evaluate.semantic: true"]
    if max_quarantine is not None:
        tree["validate"]["max_quarantine_fraction"] = max_quarantine
        changes.append(f"validate.max_quarantine_fraction: {max_quarantine}")
    out = io.StringIO()
    y.dump(tree, out)
    candidate = params.with_name(f".{params.name}.own-data.tmp")
    candidate.write_text(out.getvalue(), encoding="utf-8")
    try:
        load_config(candidate)  # the rewritten file must load, or nothing changes
        candidate.replace(params)
    finally:
        candidate.unlink(missing_ok=True)
    notes = []
    if result.rejected:
        bad = result.rejected[0]
        notes.append(
            f"{len(result.rejected)} record(s) cannot be read (first: {bad['file']}:"
            f"{bad['line']}: {bad['reason']}): ingest rejects them and validate counts them "
            "against validate.max_quarantine_fraction"
        )
    return OwnDataResult(src, len(result.rows), changes, notes)
