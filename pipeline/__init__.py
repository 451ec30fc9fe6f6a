"""Stage code of the Qwen medical fine-tuning pipeline: one module per dvc.yaml stage.

Each stage module has `run(cfg: Config)`; `python -m pipeline <stage>` runs one, `dvc repro`
runs them all, and flows/ orchestrates the same functions with Prefect.
"""

# The DAG, in execution order. dvc.yaml and flows/ must agree with it (tests/unit/test_dag.py).
STAGES = ("ingest", "validate", "split", "base", "preprocess", "train", "evaluate", "register")
# The data splits `split` writes and the later stages read.
SPLITS = ("train", "val", "test")
