"""Stage code of the Qwen medical fine-tuning pipeline: one module per dvc.yaml stage, grouped
by concern (data/, training/, evaluation/, registry/; serving/ and text/ hold no stage).

Each stage module has `run(cfg: Config)`; `python -m pipeline <stage>` runs one, `dvc repro`
runs them all, and flows/ orchestrates the same functions with Prefect.
"""

# The DAG, in execution order. dvc.yaml and flows/ must agree with it (tests/unit/test_dag.py).
STAGES = (
    "ingest",
    "validate",
    "split",
    "base",
    "preprocess",
    "train",
    "align",
    "evaluate",
    "register",
)
# Where each stage's module lives: pipeline/<concern>/<stage>.py.
STAGE_MODULES = {
    "ingest": "pipeline.data.ingest",
    "validate": "pipeline.data.validate",
    "split": "pipeline.data.split",
    "base": "pipeline.training.base",
    "preprocess": "pipeline.training.preprocess",
    "train": "pipeline.training.train",
    "align": "pipeline.training.align",
    "evaluate": "pipeline.evaluation.evaluate",
    "register": "pipeline.registry.register",
}
# The data splits `split` writes and the later stages read.
SPLITS = ("train", "val", "test")


def run_stage(stage: str, cfg):
    """Run one stage by its name, as `python -m pipeline <stage>` does; for the entry points
    that drive stages (the CLI, benchmarks). A stage or a helper module never runs another
    stage: shared code lives in a helper module beside them (tests/unit/test_imports.py)."""
    import importlib

    if stage not in STAGE_MODULES:
        from pipeline.errors import PipelineError

        raise PipelineError(f"no stage {stage!r}; the stages are {', '.join(STAGES)}")
    return importlib.import_module(STAGE_MODULES[stage]).run(cfg)
