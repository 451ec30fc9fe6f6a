"""Hand-written knowledge table for the medical dialogue generator.

Each department module exposes CONDITIONS: a list of dicts with keys
name, dept, sym, cause, care, med, doc, prev, fu1, fu2 and optionally
q (how a patient names the condition), qs (fixed opening questions per kind),
chain (which core answers the follow-ups continue)
and fu3 (a second follow-up after the self-care answer).
"""

from __future__ import annotations

import importlib

MODULES: tuple[str, ...] = (
    "neike",
    "shenjing",
    "jingshen",
    "waike",
    "guke",
    "miniao",
    "erke",
    "fuchan",
    "pifu",
    "wuguan",
)

CONDITIONS: list[dict] = []
for _module in MODULES:
    CONDITIONS.extend(importlib.import_module(f"knowledge.{_module}").CONDITIONS)
