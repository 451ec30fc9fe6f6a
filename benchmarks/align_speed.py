"""The preference stage's speed and memory next to SFT's, on the same data: tokens/s, pairs (or
conversations) per second and peak memory of `python -m pipeline train` and `python -m pipeline
align`, and their ratio. One run of each.

    python benchmarks/align_speed.py                       # CPU-sized Qwen2 shape, DPO
    python benchmarks/align_speed.py --method orpo --json benchmarks/results/align_speed.json
    python benchmarks/align_speed.py --shape qwen2.5-0.5b --full-size   # on a GPU

In a temporary project (nothing in this checkout changes): `benchmarks/qwen_shape.py` writes a
random Qwen2.5-shaped base (CPU-sized unless `--full-size`); the shipped preference pairs
(data/preference/safety_pairs.jsonl) are the data of both stages: SFT trains on each prompt with
its chosen answer, the preference stage on prompt, chosen and rejected. Each stage runs in its
own process (`preprocess`, `train`, then `align` on the adapter `train` wrote), with the same
epochs, batch size and LoRA settings. Figures:

- tokens/s: the tokens each stage feeds the model per second of training (SFT: prompt + chosen;
  DPO / ORPO: prompt + chosen and prompt + rejected; DPO's frozen reference forwards are extra
  work not counted as tokens), from the stages' own reports/train.json and reports/align.json;
- examples/s: conversations (SFT) or pairs (preference) per second;
- peak memory: peak GPU memory allocated on CUDA, else the process's peak resident set size
  (os.wait4), which includes loading the model.

The same code runs on CUDA unchanged: the stages pick the device (pipeline/modeling.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
PAIRS = REPO / "data" / "preference" / "safety_pairs.jsonl"
CPU_SHAPE = dict(
    num_hidden_layers=2,
    hidden_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=352,
    vocab_size=4096,
)


def _project(root: Path, base: Path, args) -> None:
    """params.yaml of this checkout pointed at `base`, the split made of the pairs' chosen chats."""
    tree = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    tree["model"]["base"] = str(base)
    tree["train"] |= {"epochs": args.epochs, "batch_size": args.batch_size, "save_steps": 10**6}
    tree["align"] |= {
        "enabled": True,
        "method": args.method,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "data": [{"path": "data/preference/pairs.jsonl", "format": "trl"}],
    }
    tree["register"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    (root / "params.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    (root / "data" / "preference").mkdir(parents=True)
    (root / "data" / "preference" / "pairs.jsonl").write_bytes(PAIRS.read_bytes())
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line]
    chats = [
        {
            "id": r["id"],
            "conversations": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["chosen"]},
            ],
        }
        for r in rows
    ]
    split = root / "data" / "split"
    split.mkdir(parents=True)
    for name, part in (("train", chats), ("val", chats[:4]), ("test", chats[:4])):
        text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in part)
        (split / f"{name}.jsonl").write_text(text, encoding="utf-8")


def _stage(root: Path, stage: str) -> dict:
    """Run one stage in its own process; its wall time and peak resident set size."""
    from pipeline.environment import offline_env

    env = offline_env(dict(os.environ), hub_offline=True)
    env["PYTHONPATH"] = str(REPO)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", stage],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} failed:\n{err[-3000:]}")
    rss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(rss_mb, 1)}


def _figures(report: dict, run: dict, examples: int, epochs: float, gpu: bool) -> dict:
    seconds = report["seconds"]
    peak = report.get("peak_gpu_mib") or report.get("peak_memory_mb")
    return {
        "tokens_per_second": report["tokens_per_second"],
        "examples_per_second": round(examples * epochs / seconds, 2) if seconds else 0.0,
        "train_seconds": seconds,
        "peak_memory_mb": peak if gpu and peak else run["peak_rss_mb"],
        "memory_kind": "gpu_allocated" if gpu and peak else "process_rss",
        "stage_wall_s": run["wall_s"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=("dpo", "orpo"), default="dpo")
    p.add_argument("--shape", default="qwen2.5-0.5b")
    p.add_argument("--full-size", action="store_true", help="the shape's real size (a GPU)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    import torch
    from qwen_shape import write_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        root, base = Path(tmp) / "project", Path(tmp) / "base"
        shape = {} if args.full_size else CPU_SHAPE
        write_model_folder(base, args.shape, tokenizer="corpus", **shape)
        root.mkdir()
        _project(root, base, args)
        _stage(root, "preprocess")
        runs = {"sft": _stage(root, "train"), args.method: _stage(root, "align")}
        train = json.loads((root / "reports" / "train.json").read_text())
        align = json.loads((root / "reports" / "align.json").read_text())["metrics"]
    pairs, gpu = align["pairs"], torch.cuda.is_available()
    result = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "shape": args.shape + ("" if args.full_size else " (CPU-sized)"),
        "pairs": pairs,
        "epochs": args.epochs,
        "sft": _figures(train, runs["sft"], pairs, args.epochs, gpu),
        args.method: _figures(align, runs[args.method], pairs, args.epochs, gpu),
    }
    pref, sft = result[args.method], result["sft"]
    result["ratio"] = {
        k: round(pref[k] / sft[k], 3) if sft[k] else None
        for k in ("tokens_per_second", "examples_per_second", "peak_memory_mb")
    }
    print(f"{'':6} {'tokens/s':>10} {'examples/s':>11} {'peak MB':>9} ({pref['memory_kind']})")
    for name in ("sft", args.method):
        r = result[name]
        tps, eps, mem = r["tokens_per_second"], r["examples_per_second"], r["peak_memory_mb"]
        print(f"{name:6} {tps:>10} {eps:>11} {mem:>9}")
    ratio = result["ratio"]
    print(
        f"{args.method}/sft: tokens/s x{ratio['tokens_per_second']}, examples/s "
        f"x{ratio['examples_per_second']}, peak memory x{ratio['peak_memory_mb']} "
        f"({result['device']}, {pairs} pairs, {args.epochs} epoch(s))"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
