"""The LoRA (or QLoRA, on a k-bit base) wrapper `train` fits: target modules by architecture,
the special tokens' embedding rows trained with it (`train.lora`)."""

from __future__ import annotations

from pipeline.config import Config
from pipeline.modeling import prepare_for_training

# LoRA targets for architectures whose linear layers peft's "all-linear" does not name well:
# the original Qwen-7B-Chat (remote code) has fused c_attn and c_proj / w1 / w2.
LORA_TARGETS = {"qwen": ("c_attn", "c_proj", "w1", "w2")}


def lora_targets(model_type: str | None, configured: str | tuple[str, ...]) -> str | list[str]:
    """The configured target modules; "all-linear" becomes the known list for LORA_TARGETS."""
    if configured == "all-linear" and model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    return configured if isinstance(configured, str) else list(configured)


def lora_model(model, cfg: Config, tok):
    """Wrap the (frozen, possibly k-bit) base in LoRA."""
    from peft import LoraConfig, get_peft_model

    t = cfg.train
    model = prepare_for_training(model, t.gradient_checkpointing)
    token_ids = tok.convert_tokens_to_ids(list(t.lora.trainable_tokens))
    targets = lora_targets(getattr(model.config, "model_type", None), t.lora.target_modules)
    lora = LoraConfig(
        r=t.lora.r,
        lora_alpha=t.lora.alpha,
        lora_dropout=t.lora.dropout,
        target_modules=targets,
        # With tied embeddings peft wraps lm_head too, so the rows stay tied.
        trainable_token_indices=token_ids or None,
        use_rslora=t.lora.use_rslora,
        use_dora=t.lora.use_dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
