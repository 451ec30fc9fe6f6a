"""Batched vs one-at-a-time greedy evaluation, on the pipeline's own model and test split.

    .venv/bin/python benchmarks/eval_batching.py [--batch-size 16] [--max-new-tokens 160]

Run it after `make run` (it uses models/base, models/adapter and data/split/test.jsonl). Both
ways generate the same greedy answers with the same code (pipeline.generation.generate); the
only difference is the batch size. Prints wall time, answers per second, how many answers
differ, and, last, the speed-up.
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.config import load_config
from pipeline.generation import generate
from pipeline.io import read_jsonl
from pipeline.modeling import ModelSpec, load_with_adapter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    cfg = load_config(args.params)
    spec = ModelSpec.from_config(cfg)
    model, tok = load_with_adapter(spec, cfg.paths.adapter_dir)
    rows = read_jsonl(cfg.paths.split_file("test"))
    histories = [r["conversations"][:-1] for r in rows]
    print(
        f"model: {spec.source} + adapter; {len(histories)} test questions; "
        f"max_new_tokens {args.max_new_tokens}; torch threads {torch.get_num_threads()}"
    )
    results = {}
    for batch in (1, args.batch_size):
        start = time.perf_counter()
        answers = generate(model, tok, spec, histories, args.max_new_tokens, batch)
        seconds = time.perf_counter() - start
        results[batch] = (answers, seconds)
        print(f"batch {batch:>3}: {seconds:7.2f} s  {len(answers) / seconds:6.2f} answers/s")
    one, many = results[1][0], results[args.batch_size][0]
    differ = [i for i, (a, b) in enumerate(zip(one, many, strict=True)) if a.text != b.text]
    print(
        f"answers that differ: {len(differ)} of {len(one)}"
        + (
            f" (ids {[rows[i]['id'] for i in differ]}; left padding changes float summation order, "
            "which can flip a near-tie in greedy decoding)"
            if differ
            else ""
        )
    )
    print(
        f"speed-up (batch {args.batch_size} vs 1): "
        f"{results[1][1] / results[args.batch_size][1]:.2f}x"
    )


if __name__ == "__main__":
    main()
