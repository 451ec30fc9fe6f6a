"""The `align` section of `Config`: preference training (DPO / ORPO through TRL) on the SFT
adapter (pipeline/training/align.py). Kept apart from config.py, which holds every other section,
so that each file stays one screenful of fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.section import Section

PreferenceFormat = Literal["auto", "trl", "medicalgpt"]


class PreferenceSource(Section):
    """One file of preference pairs (pipeline/data/preference.py reads it)."""

    path: str = Field(min_length=1)  # relative to the project root, under data/ for DVC
    # trl: prompt / chosen / rejected (strings or message lists); medicalgpt: question /
    # response_chosen / response_rejected (+ optional system, history); auto: by the keys
    format: PreferenceFormat


class AlignConfig(Section):
    enabled: bool  # false: the SFT adapter is the one evaluated and registered
    method: Literal["dpo", "orpo"]
    beta: float = Field(gt=0)  # DPO: KL strength against the SFT reference; ORPO: odds-ratio weight
    lr: float = Field(gt=0)
    epochs: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(gt=0)
    max_length: int = Field(gt=0)  # prompt + answer tokens; longer pairs are truncated by TRL
    seed: int
    data: tuple[PreferenceSource, ...] = Field(min_length=1)
