import pytest
from pydantic import ValidationError

from pipeline.config import load_config
from pipeline.errors import ConfigError
from tests.conftest import REPO


def test_repo_params_load_and_are_frozen():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.model.base == "tiny-qwen" and cfg.model.trust_remote_code is False
    assert cfg.train.quantization.mode == "none"
    with pytest.raises(ValidationError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_override_applies_and_is_typed(project):
    cfg = load_config(project / "params.yaml", {"train.quantization.mode": "4bit", "train.lr": 0.0})
    assert cfg.train.quantization.mode == "4bit" and cfg.train.lr == 0.0


def test_unknown_key_names_its_path(project):
    text = (
        (project / "params.yaml")
        .read_text()
        .replace("  max_seq_len: 512", "  max_seq_len: 512\n  max_seqlen: 4")
    )
    (project / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"preprocess\.max_seqlen"):
        load_config(project / "params.yaml")


def test_bad_value_and_unknown_override_are_refused(project):
    with pytest.raises(ConfigError, match=r"train\.quantization\.mode"):
        load_config(project / "params.yaml", {"train.quantization.mode": "3bit"})
    with pytest.raises(ConfigError, match="no such key"):
        load_config(project / "params.yaml", {"train.learning_rate": 1.0})
