"""`evaluate.judge` in params.yaml: where the optional LLM judge (pipeline/evaluation/judge.py) is.

A section of the one `Config` (pipeline/config.py, `EvaluateConfig.judge`), kept apart because
its checks are the judge's own: the endpoint must be an http(s) base URL and the key is named by
an environment variable, never written into params.yaml.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlparse

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class JudgeConfig:
    """`evaluate.judge` in params.yaml. Defaults live in params.yaml: every field is required."""

    endpoint: str | None  # base URL of an OpenAI-compatible API ("http://host:8000/v1"); None: off
    model: Annotated[str, Field(min_length=1)]  # the `model` field of each request
    api_key_env: str | None  # NAME of the environment variable holding the key; None: no key
    timeout_s: Annotated[float, Field(gt=0)]  # per request
    max_items: Annotated[int, Field(gt=0)]  # judge at most this many questions (2 requests each)
    max_tokens: Annotated[int, Field(gt=0)]  # reply budget; a thinking model needs room for <think>

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(
                f"expected the base URL of an OpenAI-compatible API such as "
                f"http://127.0.0.1:8000/v1, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # A pasted key ("sk-...") fails this, so it never lands in params.yaml or MLflow.
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "expected the name of an environment variable holding the key "
                "(e.g. JUDGE_API_KEY), not the key itself"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None
