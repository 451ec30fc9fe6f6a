"""The one place that decides how tokenizers and models load.

Device, dtype, bitsandbytes quantization, trust_remote_code, safetensors-only loading, the
padding token and the system prompt are settled here; every stage (and `chat` / the MLflow
model) asks this module instead of calling `from_pretrained` itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SPEC_FILE = "base_model.json"


@dataclass(frozen=True)
class ModelSpec:
    """How to load a base model: enough to rebuild it from a registered adapter alone."""

    source: str  # hub id or local directory
    revision: str
    trust_remote_code: bool
    dtype: str
    quantization: str  # none | 8bit | 4bit
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"
    system_prompt: str | None = None

    @classmethod
    def from_config(cls, cfg: Config, *, source: str | None = None) -> ModelSpec:
        q = cfg.train.quantization
        return cls(
            source=source or base_source(cfg),
            revision=cfg.model.revision,
            trust_remote_code=cfg.model.trust_remote_code,
            dtype=cfg.model.dtype,
            quantization=q.mode,
            quant_type=q.quant_type,
            double_quant=q.double_quant,
            compute_dtype=q.compute_dtype,
            system_prompt=cfg.model.system_prompt,
        )

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ModelSpec:
        try:
            return cls(**json.loads((directory / SPEC_FILE).read_text()))
        except (OSError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory / SPEC_FILE}: unreadable model spec: {exc}") from None


def base_source(cfg: Config) -> str:
    """The built tiny model's directory, or the configured hub id / local directory."""
    return str(cfg.paths.base_dir) if cfg.uses_builtin_base else cfg.model.base


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str) -> torch.dtype:
    import torch

    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, name)


def _is_local(source: str) -> bool:
    return Path(source).exists()


def _hub_kwargs(spec: ModelSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if not _is_local(spec.source):
        kwargs["revision"] = spec.revision
    return kwargs


def load_tokenizer(spec: ModelSpec, *, local_files_only: bool = False) -> PreTrainedTokenizerBase:
    """The base's own tokenizer and chat template; pads with <|endoftext|> when it has no pad.
    `local_files_only`: never download (validate uses a hub tokenizer only if already cached)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(
            spec.source, local_files_only=local_files_only, **_hub_kwargs(spec)
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"tokenizer of {spec.source!r}: {exc}") from None
    if tok.chat_template is None:
        raise ModelLoadError(
            f"tokenizer of {spec.source!r} has no chat template; use a chat (Instruct) model"
        )
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else tok.eos_token
    return tok


def bnb_config(spec: ModelSpec) -> Any | None:
    """The bitsandbytes config for 8-bit or 4-bit loading (None for full precision)."""
    from transformers import BitsAndBytesConfig

    if spec.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=spec.quant_type,
            bnb_4bit_use_double_quant=spec.double_quant,
            bnb_4bit_compute_dtype=torch_dtype(spec.compute_dtype),
        )
    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(spec: ModelSpec, *, quantize: bool = True) -> PreTrainedModel:
    """The base model on this machine's device, quantized as the spec says (safetensors only)."""
    from transformers import AutoModelForCausalLM

    quant = bnb_config(spec) if quantize else None
    kwargs = _hub_kwargs(spec)
    if quant is not None:
        kwargs |= {"quantization_config": quant, "device_map": {"": device()}}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.source, dtype=torch_dtype(spec.dtype), use_safetensors=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.source!r}: {exc}") from None
    if quant is None:
        model.to(device())
    log.info("loaded %s (%s, %s) on %s", spec.source, spec.quantization, spec.dtype, device())
    return model


def load_with_adapter(spec: ModelSpec, adapter_dir: Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """Base + LoRA adapter, in eval mode, with the adapter's tokenizer (saved beside it)."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter_dir}: no adapter_config.json (run the train stage)")
    tokenizer = load_tokenizer(ModelSpec(**{**asdict(spec), "source": str(adapter_dir)}))
    model = PeftModel.from_pretrained(load_model(spec), str(adapter_dir))
    return model.eval(), tokenizer


def chat_messages(spec: ModelSpec, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """Prepend the configured system prompt, if any, unless the turns carry their own."""
    if spec.system_prompt and (not turns or turns[0]["role"] != "system"):
        return [{"role": "system", "content": spec.system_prompt}, *turns]
    return turns
