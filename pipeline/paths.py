"""Where every file of the pipeline lives, under the project root: `cfg.paths`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every file a stage reads or writes, under the project root (dvc.yaml names them too)."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def ingested_dir(self) -> Path:
        return self.root / "data" / "ingested"

    @property
    def ingested(self) -> Path:
        return self.ingested_dir / "conversations.jsonl"

    @property
    def rejected(self) -> Path:
        """Records `ingest` could not turn into a conversation (validate applies the policy)."""
        return self.ingested_dir / "rejected.jsonl"

    @property
    def quarantine(self) -> Path:
        return self.root / "data" / "quarantine" / "conversations.jsonl"

    @property
    def data_reports(self) -> Path:
        """Reports about the data (ingest counts, validation summary and GX Data Docs)."""
        return self.root / "data" / "reports"

    @property
    def validation_reports(self) -> Path:
        return self.data_reports / "validation"

    @property
    def validated(self) -> Path:
        return self.root / "data" / "validated" / "conversations.jsonl"

    @property
    def split_dir(self) -> Path:
        return self.root / "data" / "split"

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def base_dir(self) -> Path:
        return self.root / "models" / "base"

    @property
    def adapter_dir(self) -> Path:
        return self.root / "models" / "adapter"

    @property
    def aligned_dir(self) -> Path:
        """The `align` stage's output: the preference-trained adapter (or only its align.json)."""
        return self.root / "models" / "aligned"

    def final_adapter(self, aligned: bool) -> Path:
        """The adapter evaluate and register use: the aligned one when `align.enabled`."""
        return self.aligned_dir if aligned else self.adapter_dir

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def split_file(self, name: str) -> Path:
        return self.split_dir / f"{name}.jsonl"
