"""The embedded tiny Qwen2: its byte-level BPE tokenizer (Qwen2's split regex, ChatML tokens,
Qwen2.5's chat template) and its model. The `base` stage pretrains one; benchmarks and GPU
tests build one of any shape.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import TinyModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer split (the GPT-4-style regex with single digits).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def qwen25_chat_template() -> str:
    return (Path(__file__).parents[1] / "templates" / "qwen2_5.jinja").read_text(encoding="utf-8")


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE over `texts` with Qwen2's split regex, ChatML tokens and template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = qwen25_chat_template()
    return tok


def new_model(tok, t: TinyModelConfig):
    """A randomly initialised Qwen2 of `tiny`'s shape over `tok`'s vocabulary, stopping at
    <|im_end|> (or <|endoftext|>)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    im_end, eot = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=t.hidden_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_kv_heads,
        intermediate_size=t.intermediate_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,  # as in the small Qwen2.5 models
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=eot,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [im_end, eot]
    model.generation_config.pad_token_id = eot
    return model
