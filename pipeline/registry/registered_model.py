"""The registered MLflow model, as code (MLflow's models-from-code): no pickle is written or read.

`register` logs this file as the model (`mlflow.pyfunc.log_model(python_model=<this file>,
artifacts=...)`); its last line, `mlflow.models.set_model(...)`, is what MLflow's own loader
(`mlflow.pyfunc.load_model`) takes as the model. The artifacts are data only: the LoRA adapter
(adapter_model.safetensors, its config and the tokenizer files), a base-model spec (hub id and
revision, JSON) and, for the embedded tiny base, its safetensors weights.

`chat` and `serve` load a version with `load()`, which goes further than MLflow's loader: it
runs no code from the artifact store at all. It checks that the version is a code model (a
version logged as `python_model.pkl` by an older pipeline is refused: re-register it), maps the
artifacts it names (inside the downloaded folder only) and hands them to this installation's
`MedicalChatModel`; the weights load as safetensors only (pipeline.modeling).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel, PythonModelContext

import mlflow
from pipeline.errors import ModelLoadError
from pipeline.generation import generate
from pipeline.modeling import ModelSpec, load_with_adapter

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 512


class MedicalChatModel(PythonModel):
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


def code_path() -> str:
    """This file: what `register` logs as the model."""
    return str(Path(__file__).resolve())


def _artifacts(local: Path, uri: str) -> dict[str, str]:
    """The artifact paths a code model's MLmodel names, each checked to lie inside `local`."""
    from mlflow.models import Model

    try:
        flavor = Model.load(str(local)).flavors["python_function"]
    except (OSError, KeyError) as exc:
        raise ModelLoadError(f"{uri}: not a pyfunc model ({exc})") from None
    if "model_code_path" not in flavor or "python_model" in flavor:
        raise ModelLoadError(
            f"{uri} was registered as a pickle (python_model.pkl) by an older pipeline and is "
            "not loaded: pickles run code; register it again (python -m pipeline register)"
        )
    root, out = local.resolve(), {}
    for name, entry in (flavor.get("artifacts") or {}).items():
        path = (root / entry["path"]).resolve()
        if not path.is_relative_to(root) or not path.exists():
            raise ModelLoadError(f"{uri}: artifact {name!r} points to {entry['path']!r}")
        out[name] = str(path)
    return out


def _fetch(uri: str, into: str) -> Path:
    """MLflow's download of `uri` into `into`, its failures typed: what the registry says is
    missing stays MLflow's error (the caller names it); anything else that stops the download
    (the server, or the artifact store behind it or read directly, not answering: MLflow's,
    boto's or requests' errors) is a RegistryUnavailable naming where, never an internal
    error."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import tracking

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=into))
    except MlflowException as exc:
        if tracking.is_not_found(exc):
            raise
        raise tracking.unavailable(exc, f"downloading {uri}") from None
    except tracking.transport_errors() as exc:
        raise tracking.unavailable(exc, f"downloading {uri}") from None


def download(uri: str, into: Path) -> tuple[ModelSpec, Path]:
    """Download a registered version into `into`: (its base spec, its adapter folder). The one
    place that knows a version's layout (evaluate's champion, score, export)."""
    local = _fetch(uri, str(into))
    artifacts = _artifacts(local, uri)
    spec = ModelSpec.load(Path(artifacts["spec"]).parent)
    if "base" in artifacts:
        spec = replace(spec, source=artifacts["base"])
    return spec, Path(artifacts["adapter"])


def load(uri: str) -> MedicalChatModel:
    """A registered version (`models:/name/3`, `models:/name@champion`) as a loaded
    MedicalChatModel, reading only data from the store (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="registered-model-") as tmp:
        local = _fetch(uri, tmp)
        model = MedicalChatModel()
        model.load_context(PythonModelContext(_artifacts(local, uri), None))
    return model  # weights and tokenizer are in memory: the download can go


def log_model(artifacts: dict[str, str], requirements: list[str], registered_name: str) -> Any:
    """Log this file as the model with its artifacts, and register it."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=code_path(),
        artifacts=artifacts,
        pip_requirements=requirements,
        registered_model_name=registered_name,
    )


mlflow.models.set_model(MedicalChatModel())
