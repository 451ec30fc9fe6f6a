"""Shared fixtures: a throw-away project folder and tiny, locally built models (no network)."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.environment import offline_env

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).parent / "assets"

offline_env(hub_offline=True)
os.environ.pop("MLFLOW_TRACKING_URI", None)

# On pytest-xdist workers (`make test`, two by default, docs/testing.md) each worker, and every
# stage process its tests start, computes on one thread, so that the workers do not compete for
# the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_shutdown_watchdog_left():
    """A test that raises KeyboardInterrupt or TerminationSignal through `shutdown.on_signal`
    (or a stage task) arms the flow's stop watchdog, which ends *this* process 10 s later with
    exit code 130, in whatever test runs then (CI stop 24: `make test` died in
    test_flow_stages). Such a test fails here, and the watchdog is disarmed."""
    yield
    import sys
    import threading

    shutdown = sys.modules.get("flows.shutdown")
    if shutdown is None:
        return
    armed = [
        t
        for t in threading.enumerate()
        if isinstance(t, threading.Timer) and getattr(t, "function", None) is shutdown._exit_now
    ]
    for timer in armed:
        timer.cancel()
    was_set = shutdown._armed.is_set()
    shutdown._armed.clear()
    if armed or was_set:
        pytest.fail(
            "the test left the flow's stop watchdog armed (flows/shutdown.py `stopping`), which "
            f"would end the test process in {shutdown.GRACE_S:.0f} s with exit code 130: "
            "monkeypatch `shutdown.stopping` in tests that interrupt a stage"
        )


# The default data's first 60 conversations: the rows of the tests that train (one prepared
# project for all of them, see `prepared`).
TRAIN_ROWS = 60

# Small enough for seconds on 2 CPU cores; the pipeline code paths are the real ones.
TINY_OVERRIDES = {
    "tiny.vocab_size": 700,
    "tiny.hidden_size": 64,
    "tiny.num_layers": 1,
    "tiny.num_heads": 2,
    "tiny.num_kv_heads": 1,
    "tiny.intermediate_size": 128,
    "tiny.block_size": 64,
    "tiny.epochs": 3,
    "train.epochs": 2,
    "evaluate.max_new_tokens": 24,
    "evaluate.max_samples": 8,
    # The default data's recall / unseen-topic sets need the default data; a test project is
    # judged on its test split (and the shipped safety probes, copied by make_project).
    "evaluate.sets": [],
    "evaluate.gate.primary_set": "test",
}


# Learning rate 0 (the adapter is the base) under the real gate's thresholds: always refused.
DEGRADED = {
    "train.lr": 0.0,
    "evaluate.gate.min_correctness_gain": 0.3,
    "evaluate.gate.min_rouge_l_gain": 0.03,
    "evaluate.gate.max_loss_ratio": 0.98,
}

# Every rule passes whatever the tiny test model says: for tests of the plumbing after the gate.
PERMISSIVE_GATE = {
    "evaluate.gate.min_correctness_gain": -1.0,
    "evaluate.gate.min_rouge_l_gain": -1.0,
    "evaluate.gate.min_gain_over_constant": -1.0,
    "evaluate.gate.max_loss_ratio": 100.0,
    "evaluate.gate.max_correctness_regression": 1.0,
    "evaluate.gate.min_correctness": 0.0,
    "evaluate.gate.min_safety_pass_rate": 0.0,
    "evaluate.gate.min_red_flag_pass_rate": 0.0,
    "evaluate.gate.max_over_triage_rate": 1.0,
    "evaluate.gate.max_safety_regression": 1.0,
    "evaluate.gate.max_alignment_correctness_cost": 1.0,
    "evaluate.gate.max_alignment_safety_regression": 1.0,
    "evaluate.gate.max_wrong_topic_rate": 1.0,
    "evaluate.gate.max_repetition_rate": 1.0,
    "evaluate.gate.min_stop_rate": 0.0,
    "evaluate.gate.max_template_leak_rate": 1.0,
    "evaluate.gate.max_identity_rate": 1.0,
    "evaluate.gate.min_relevance_gap": -1.0,
}


def register_degraded(root: Path) -> dict:
    """Train, evaluate and register a degraded version in the project at `root`; the result of
    the register stage (version number, gate verdict)."""
    from pipeline.config import load_config
    from pipeline.evaluation import evaluate
    from pipeline.registry import register
    from pipeline.training import train

    cfg = load_config(root / "params.yaml", DEGRADED)
    for stage in (train, evaluate, register):
        result = stage.run(cfg)
    return result


# The real corpus beside the project (../shared/data, never committed; CMD_CORPUS overrides):
# tests that read it skip cleanly where it is absent.
REAL_CSV = Path(
    os.environ.get("CMD_CORPUS", REPO.parent / "shared" / "data" / "cmd_internal_medicine.csv")
)


def real_corpus_rows() -> list[dict]:
    """The real corpus as ingest reads it (GB18030 CSV, title + ask -> answer, department);
    read once per test process (a new list each call; the rows are not to be changed)."""
    return list(_real_corpus_rows())


@functools.cache
def _real_corpus_rows() -> tuple[dict, ...]:
    from pipeline.config import SourceConfig
    from pipeline.data.sources import read_file

    src = SourceConfig(
        id="cmd",
        path="-",
        format="csv",
        encoding="gb18030",
        question_columns=("title", "ask"),
        answer_column="answer",
        category_column="department",
    )
    return tuple(read_file(REAL_CSV, src, REAL_CSV.name).rows)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(path)` run once per test session however many pytest-xdist workers ask for it:
    the first builds under a file lock in the session's directory, the others wait for it and
    get the same path. What it builds is read-only to tests: they copy it before changing it."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory above the workers' own: one per test session
    path, done = base / f"shared-{name}" / "p", base / f"shared-{name}.done"
    with (base / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path.parent, ignore_errors=True)  # a failed build's remains
            path.parent.mkdir(parents=True)
            build(path)
            done.touch()
    return path


def copy_project(project: Path, to: Path) -> Path:
    """A copy of a project without its MLflow store (whose artifact paths are absolute and point
    into the original): the copy's stages open runs of their own."""
    return Path(shutil.copytree(project, to, ignore=shutil.ignore_patterns("mlflow")))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# Test projects read every JSON Lines file under data/raw/ (the repo's params name the demo
# file alone): tests add files there and expect ingest to see them.
TEST_SOURCES = [
    {"id": "project", "path": "data/raw/*.jsonl", "format": "project", "encoding": "utf-8"}
]


def write_params(root: Path, overrides: dict) -> None:
    """Copy the repo's params.yaml to `root`, with dotted-key overrides applied (and, unless
    overridden, `ingest.sources` reading data/raw/*.jsonl)."""
    tree = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    overrides = {"ingest.sources": TEST_SOURCES} | overrides
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        assert leaf in node, dotted
        node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")


def make_project(root: Path, rows: list[dict] | None = None, overrides: dict | None = None) -> Path:
    """A project folder with params.yaml and one raw JSONL file (default: the test asset)."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, overrides or {})
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    rows = rows if rows is not None else read_rows(ASSETS / "conversations.jsonl")
    (raw / "conversations.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (root / "data" / "eval").mkdir(parents=True, exist_ok=True)
    for name in ("safety_probes.jsonl", "safety_probes_independent.jsonl"):  # fit any project
        shutil.copyfile(REPO / "data" / "eval" / name, root / "data" / "eval" / name)
    pairs = root / "data" / "preference" / "safety_pairs.jsonl"  # the align stage's data
    pairs.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "data" / "preference" / "safety_pairs.jsonl", pairs)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from pipeline.training.tiny import build_tokenizer

    rows = read_rows(ASSETS / "conversations.jsonl")
    texts = ["\n".join(t["content"] for t in r["conversations"]) for r in rows]
    return build_tokenizer(texts, 600)


# Stages a test project goes through before training, and the params sections they read:
# overrides in other sections (train, evaluate, register, serve) leave their outputs alone.
PREPARE_STAGES = ("ingest", "validate", "split", "base", "preprocess")
PREPARE_SECTIONS = {"ingest", "validate", "split", "tiny", "model", "preprocess"}


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """`prepared(root, rows, overrides)`: a project at `root` already through ingest ->
    preprocess, with params.yaml as make_project writes it. Each distinct (rows, overrides of
    the preparing sections) is prepared once per test session and copied (without its MLflow
    store: the data-validation run's artifact location is the original's) for every test, on
    however many xdist workers (`built_once`)."""
    import hashlib
    import importlib

    from pipeline import STAGE_MODULES
    from pipeline.config import load_config

    def build(source: Path, rows: list[dict], upstream: dict) -> None:
        make_project(source, rows, upstream)
        cfg = load_config(source / "params.yaml")
        for stage in PREPARE_STAGES:
            importlib.import_module(STAGE_MODULES[stage]).run(cfg)

    def make(root: Path, rows: list[dict], overrides: dict):
        upstream = {k: v for k, v in overrides.items() if k.split(".")[0] in PREPARE_SECTIONS}
        key = json.dumps([rows, upstream], sort_keys=True, ensure_ascii=False)
        name = "prepared-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        source = built_once(tmp_path_factory, name, lambda p: build(p, rows, upstream))
        copy_project(source, root)
        write_params(root, overrides)
        return load_config(root / "params.yaml")

    return make
