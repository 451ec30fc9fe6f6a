"""The base of every params section of `Config`: frozen, unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # protected_namespaces=(): sections are named after stages, e.g. `register`.
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
