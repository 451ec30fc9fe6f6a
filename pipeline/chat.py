"""Answer questions with the registered champion: `models:/<name>@champion` (base + adapter).

    python -m pipeline chat "胃疼吃什么药？"

`MedicalChatModel` is the MLflow pyfunc model that `register` logs: its artifacts are the
adapter, a base-model spec (hub id + revision, or the embedded tiny base's files) and it loads
through pipeline.modeling like every other stage.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import mlflow.pyfunc

from pipeline import tracking
from pipeline.config import Config
from pipeline.errors import RegistryError
from pipeline.generation import generate
from pipeline.modeling import ModelSpec, load_with_adapter

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 512


class MedicalChatModel(mlflow.pyfunc.PythonModel):
    """pyfunc: a list of questions in, a list of answers out (greedy, stops at <|im_end|>)."""

    def load_context(self, context) -> None:
        spec = ModelSpec.load(Path(context.artifacts["spec"]).parent)
        if "base" in context.artifacts:
            spec = replace(spec, source=context.artifacts["base"])
        self.spec = spec
        self.model, self.tokenizer = load_with_adapter(spec, Path(context.artifacts["adapter"]))

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        max_new = int((params or {}).get("max_new_tokens", MAX_NEW_TOKENS))
        histories = [[{"role": "user", "content": q}] for q in model_input]
        return [a.text for a in generate(self.model, self.tokenizer, self.spec, histories, max_new)]


def load_champion(cfg: Config, alias: str = "champion"):
    from mlflow.exceptions import MlflowException

    tracking.setup(cfg)
    uri = f"models:/{cfg.register_.model_name}@{alias}"
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise RegistryError(
            f"{uri}: cannot load ({exc.message.splitlines()[0]}); run the pipeline (make run) "
            "or promote a version"
        ) from None


def format_answer(question: str, answer: str) -> str:
    """The original project's output form."""
    return f"### 用户:\n{question}\n\n### 医生:\n{answer}"


def run(cfg: Config, question: str, alias: str = "champion") -> str:
    answer = load_champion(cfg, alias).predict([question])[0]
    return format_answer(question, answer)
