"""Answer questions with the registered champion: `models:/<name>@champion` (base + adapter).

    python -m pipeline chat "胃疼吃什么药？"

The version is loaded by pipeline.registry.registered_model: the adapter, the base-model spec
and (for the embedded tiny base) its weights, safetensors only, through pipeline.modeling like every
other stage; nothing is unpickled and no code is run from the registry.
"""

from __future__ import annotations

import logging

from pipeline.config import Config
from pipeline.errors import ConfigError, RegistryError
from pipeline.registry import tracking

log = logging.getLogger(__name__)


def load_champion(cfg: Config, alias: str = "champion"):
    """The version that holds `alias`, loaded (a registered_model.MedicalChatModel)."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import registered_model

    tracking.setup(cfg)
    uri = f"models:/{cfg.register_.model_name}@{alias}"
    try:
        return registered_model.load(uri)
    except MlflowException as exc:
        if not tracking.is_not_found(exc):
            raise tracking.unavailable(exc, f"loading {uri}") from None
        raise RegistryError(
            f"{uri}: cannot load ({exc.message.splitlines()[0]}); run the pipeline (make run) "
            "or promote a version"
        ) from None


def format_answer(question: str, answer: str) -> str:
    """The original project's output form."""
    return f"### 用户:\n{question}\n\n### 医生:\n{answer}"


def check_question(question: str) -> str:
    """The question, or a usage error (exit 2) when it is empty or whitespace only: checked
    before any model is loaded."""
    if not question.strip():
        raise ConfigError('chat: the question is empty; ask something, e.g. chat "胃疼吃什么药？"')
    return question


def run(cfg: Config, question: str, alias: str = "champion") -> str:
    check_question(question)
    answer = load_champion(cfg, alias).predict(None, [question])[0]
    return format_answer(question, answer)
