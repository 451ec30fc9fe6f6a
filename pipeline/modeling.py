"""The one place that decides how tokenizers and models load.

Device, dtype, bitsandbytes quantization, trust_remote_code, safetensors-only loading, the
padding token and the system prompt are settled here; every stage (and `chat` / the MLflow
model) asks this module instead of calling `from_pretrained` itself.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SPEC_FILE = "base_model.json"
TEMPLATES = Path(__file__).parent / "templates"
# Architectures that exist only as remote code, with what they are and what they lack.
REMOTE_CODE_MODELS = {"qwen": "the original Qwen-(1.8B|7B|14B|72B)-Chat (QWenLMHeadModel)"}


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
    """This process's device: its own GPU under torchrun / accelerate (LOCAL_RANK), else cuda:0
    or the CPU."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def sharded_weights() -> bool:
    """FSDP or DeepSpeed ZeRO-3, as `accelerate launch` exports them: the launcher then places
    (and shards) the weights, and 4-bit weights must be stored in a float dtype to be shardable."""
    return (
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
        or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    )


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


def model_type(spec: ModelSpec, *, local_files_only: bool = False) -> str | None:
    """The base's `model_type` from its config.json (None where there is none to read, e.g. an
    adapter folder or a hub id that is not cached offline: the loader then reports it).

    A model that exists only as remote code (the original Qwen-7B-Chat) is refused with a
    ConfigError unless `model.trust_remote_code` is true.
    """
    from transformers import CONFIG_MAPPING, PreTrainedConfig

    try:
        kwargs = {k: v for k, v in _hub_kwargs(spec).items() if k != "trust_remote_code"}
        config, _ = PreTrainedConfig.get_config_dict(
            spec.source, local_files_only=local_files_only, **kwargs
        )
    except (OSError, ValueError):
        return None
    kind = config.get("model_type")
    remote_only = "auto_map" in config and kind not in CONFIG_MAPPING
    if remote_only and not spec.trust_remote_code:
        what = REMOTE_CODE_MODELS.get(kind, f"model type {kind!r}")
        raise ConfigError(
            f"model.base {spec.source!r} is {what}, which runs the model's own Python code; "
            "set model.trust_remote_code: true in params.yaml if you trust it"
        )
    return kind


def render_chat(tok, messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    """The chat template's text. Thinking is off (`enable_thinking=False`): Qwen3's template then
    opens the answer with an empty think block; templates without the switch ignore it."""
    return tok.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        enable_thinking=False,
    )


def load_tokenizer(spec: ModelSpec, *, local_files_only: bool = False) -> PreTrainedTokenizerBase:
    """The base's own tokenizer and chat template; pads with <|endoftext|> when it has no pad.
    `local_files_only`: never download (validate uses a hub tokenizer only if already cached).

    The original Qwen-7B-Chat has no template (its remote code builds ChatML in `make_context`);
    it gets that same ChatML as a template.
    """
    from transformers import AutoTokenizer

    kind = model_type(spec, local_files_only=local_files_only)
    try:
        tok = AutoTokenizer.from_pretrained(
            spec.source, local_files_only=local_files_only, **_hub_kwargs(spec)
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"tokenizer of {spec.source!r}: {exc}") from None
    if tok.chat_template is None and kind in REMOTE_CODE_MODELS:
        tok.chat_template = (TEMPLATES / "qwen_chatml.jinja").read_text(encoding="utf-8")
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
        storage = {"bnb_4bit_quant_storage": torch_dtype(spec.dtype)} if sharded_weights() else {}
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=spec.quant_type,
            bnb_4bit_use_double_quant=spec.double_quant,
            bnb_4bit_compute_dtype=torch_dtype(spec.compute_dtype),
            **storage,
        )
    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(
    spec: ModelSpec, *, quantize: bool = True, attn_implementation: str | None = None
) -> PreTrainedModel:
    """The base model on this machine's device, quantized as the spec says (safetensors only).

    `attn_implementation` (training only: `train.speed`, resolved by training/speed.py) picks
    the attention kernel; None leaves transformers' choice (SDPA where it can). It is not part
    of the spec: evaluation and serving load with the default.
    """
    from transformers import AutoModelForCausalLM

    model_type(spec)  # refuses remote-code models without trust_remote_code
    quant = bnb_config(spec) if quantize else None
    kwargs = _hub_kwargs(spec)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quant is not None:
        kwargs["quantization_config"] = quant
        if not sharded_weights():
            kwargs["device_map"] = {"": device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.source, dtype=torch_dtype(spec.dtype), use_safetensors=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.source!r}: {exc}") from None
    if quant is None and not sharded_weights():
        model.to(device())
    log.info(
        "loaded %s (%s, %s, %s attention) on %s",
        spec.source,
        spec.quantization,
        spec.dtype,
        model.config._attn_implementation,
        device(),
    )
    return model


def prepare_for_training(model: PreTrainedModel, gradient_checkpointing: bool) -> PreTrainedModel:
    """Freeze the base for (Q)LoRA, keeping every weight in the dtype it was loaded in.

    peft's `prepare_model_for_kbit_training` upcasts every weight that is not quantized to
    float32, the embeddings and lm_head included: 1.09 B parameters on Qwen2.5-7B, +2.2 GB, about
    what its 4-bit body weighs. Qwen2's RMSNorm already computes in float32 and the LoRA weights
    peft adds are float32, so training keeps its precision where it matters.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def load_with_adapter(spec: ModelSpec, adapter_dir: Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """Base + LoRA adapter, in eval mode, with the adapter's tokenizer (saved beside it)."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter_dir}: no adapter_config.json (run the train stage)")
    if not (adapter_dir / "adapter_model.safetensors").exists():  # peft would unpickle a .bin
        found = sorted(p.name for p in adapter_dir.iterdir() if p.suffix in (".bin", ".pt"))
        raise ModelLoadError(
            f"{adapter_dir}: no adapter_model.safetensors (found {found or 'no weights'}); only "
            "safetensors weights are loaded: pickled ones (.bin, .pt) can run code"
        )
    tokenizer = load_tokenizer(ModelSpec(**{**asdict(spec), "source": str(adapter_dir)}))
    model = PeftModel.from_pretrained(load_model(spec), str(adapter_dir))
    return model.eval(), tokenizer


def chat_messages(spec: ModelSpec, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """Prepend the configured system prompt, if any, unless the turns carry their own."""
    if spec.system_prompt and (not turns or turns[0]["role"] != "system"):
        return [{"role": "system", "content": spec.system_prompt}, *turns]
    return turns
