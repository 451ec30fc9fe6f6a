"""The registered model loads data only: safetensors weights, a code model's artifacts inside
its own folder; a pickled adapter or a pickled (python_model.pkl) version is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import ModelLoadError
from pipeline.modeling import ModelSpec, load_with_adapter
from pipeline.registry.registered_model import _artifacts, code_path


def test_an_adapter_with_only_a_bin_is_refused(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / "adapter_model.bin").write_bytes(b"pickled weights")
    spec = ModelSpec(str(tmp_path / "no-base"), "main", False, "float32", "none")
    with pytest.raises(ModelLoadError, match=r"no adapter_model.safetensors.*adapter_model.bin"):
        load_with_adapter(spec, adapter)


def _mlmodel(root: Path, flavor: dict) -> Path:
    root.mkdir()
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": flavor}}))
    (root / "artifacts").mkdir()
    (root / "artifacts" / "base_model.json").write_text("{}")
    return root


def test_a_code_models_artifacts_are_mapped_inside_its_folder(tmp_path):
    code = {"loader_module": "mlflow.pyfunc.loaders.code_model", "model_code_path": "m.py"}
    spec = {"spec": {"path": "artifacts/base_model.json", "uri": "/elsewhere/base_model.json"}}
    local = _mlmodel(tmp_path / "ok", {**code, "artifacts": spec})
    assert _artifacts(local, "models:/m/1") == {
        "spec": str((local / "artifacts" / "base_model.json").resolve())
    }
    outside = {"spec": {"path": "../../etc/passwd", "uri": "x"}}
    local = _mlmodel(tmp_path / "escape", {**code, "artifacts": outside})
    with pytest.raises(ModelLoadError, match="points to '../../etc/passwd'"):
        _artifacts(local, "models:/m/2")


def test_a_pickled_version_is_refused(tmp_path):
    pickled = {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}
    local = _mlmodel(tmp_path / "pkl", pickled)
    with pytest.raises(ModelLoadError, match=r"registered as a pickle .* register it again"):
        _artifacts(local, "models:/m/1")


def test_the_model_file_sets_the_model_for_mlflow():
    """What `register` logs is this file, and running it (as MLflow does) sets the model."""
    import mlflow.models.model
    from mlflow.models.utils import _load_model_code_path

    assert code_path().endswith("pipeline/registry/registered_model.py")
    model = _load_model_code_path(code_path(), None)
    assert type(model).__name__ == "MedicalChatModel"
    assert mlflow.models.model.__mlflow_model__ is model
