"""The one typed configuration, loaded from params.yaml (plus optional overrides).

Every stage receives a frozen `Config`; nothing else reads params.yaml. Unknown keys are
rejected at load time with the offending key path, so a typo never silently falls back to a
default. Defaults live in params.yaml only: every field here is required.

Every section is typed here except `evaluate.judge` (evaluation/judge_config.py, the judge's own
URL and key checks) and `align` (training/align_config.py); the files the stages read and write
are `cfg.paths` (pipeline/paths.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.errors import ConfigError
from pipeline.evaluation.gate_config import GateConfig
from pipeline.evaluation.judge_config import JudgeConfig
from pipeline.paths import Paths
from pipeline.section import Section
from pipeline.training.align_config import AlignConfig

BUILTIN_BASE = "tiny-qwen"


class ModelConfig(Section):
    base: str  # BUILTIN_BASE, a hub id or a local directory
    revision: str  # hub revision (branch, tag or commit); ignored for local paths
    trust_remote_code: bool
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    system_prompt: str | None  # None: the chat template's own default


FORMATS = ("auto", "project", "sharegpt", "openai", "conversation", "alpaca", "csv", "tsv")
ENCODINGS = ("auto", "utf-8", "utf-8-sig", "gbk", "gb18030")
Format = Literal["auto", "project", "sharegpt", "openai", "conversation", "alpaca", "csv", "tsv"]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gbk", "gb18030"]


class SourceConfig(Section):
    """One input of the `ingest` stage: a file (or glob) in one format and encoding."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(min_length=1)  # relative to the project root; a glob is allowed
    format: Format
    encoding: Encoding
    question_columns: tuple[str, ...] = ()  # csv/tsv: joined into the user turn
    answer_column: str | None = None  # csv/tsv: the assistant turn
    join: str = "\n"  # csv/tsv: between the non-empty question columns
    # csv/tsv: a column that sorts conversations into groups (e.g. a department); evaluation
    # samples every group of every source (pipeline/evaluation/evalsets.py)
    category_column: str | None = None

    @model_validator(mode="after")
    def _columns_for_tables(self) -> SourceConfig:
        table = self.format in ("csv", "tsv")
        if table and (not self.question_columns or not self.answer_column):
            raise ValueError(
                f"source {self.id!r}: format {self.format} needs question_columns (a list) "
                "and answer_column"
            )
        if not table and (self.question_columns or self.answer_column or self.category_column):
            raise ValueError(
                f"source {self.id!r}: question_columns / answer_column / category_column are "
                f"for csv and tsv only, not {self.format}"
            )
        return self


class IngestConfig(Section):
    sources: tuple[SourceConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> IngestConfig:
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be unique, got {ids}")
        return self


Policy = Literal["fail", "quarantine", "redact", "warn"]
PII_RULES = ("pii_id_number", "pii_mobile", "pii_email")
# Records that could not be parsed into a conversation: there is nothing to keep or redact.
STRUCTURAL_RULES = ("malformed_json", "schema", "content_type")


class PoliciesConfig(Section):
    """What happens to a conversation that breaks a rule (see pipeline/data/validate.py)."""

    malformed_json: Policy
    schema_: Policy = Field(alias="schema")
    content_type: Policy
    known_roles: Policy
    alternation: Policy
    ends_with_assistant: Policy
    empty_turn: Policy
    max_chars: Policy
    turn_count: Policy
    too_long: Policy
    duplicate: Policy
    near_duplicate: Policy
    mojibake: Policy
    control_chars: Policy
    pii_id_number: Policy
    pii_mobile: Policy
    pii_email: Policy

    def as_dict(self) -> dict[str, str]:
        return self.model_dump(by_alias=True)

    @model_validator(mode="after")
    def _policies_fit_rules(self) -> PoliciesConfig:
        for rule, policy in self.as_dict().items():
            if policy == "redact" and rule not in PII_RULES:
                raise ValueError(
                    f"{rule}: policy 'redact' is only for personal data ({', '.join(PII_RULES)}); "
                    "use fail, quarantine or warn"
                )
            if policy == "warn" and rule in STRUCTURAL_RULES:
                raise ValueError(
                    f"{rule}: policy 'warn' would keep a record that is not a conversation; "
                    "use fail or quarantine"
                )
        return self


class ValidateConfig(Section):
    max_chars: int = Field(gt=0)
    max_turns: int = Field(gt=1)
    max_quarantine_fraction: float = Field(ge=0, le=1)  # 0.0: any quarantine fails the stage
    chars_per_token: float = Field(gt=0)  # token estimate when no tokenizer is available
    examples: int = Field(ge=0)  # examples per rule in the summary
    policies: PoliciesConfig


class SplitConfig(Section):
    seed: int
    val_fraction: float = Field(ge=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)
    always_train: tuple[str, ...]  # first questions kept in train (the README's examples)
    # trigram Jaccard from which first questions / answers are kept together; None: exact only
    near_duplicate_threshold: float | None = Field(gt=0, le=1)


class TinyModelConfig(Section):
    """The embedded offline base: a small Qwen2 built and pretrained by the `base` stage."""

    vocab_size: int = Field(ge=300)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    block_size: int = Field(gt=8)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    max_tokens: int = Field(gt=0)  # pretraining budget: epochs x tokens per epoch at most this
    lr: float = Field(gt=0)
    seed: int
    bf16: bool
    chat_warmup: int = Field(ge=0)  # generic ChatML exercises mixed into pretraining

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, num_heads by num_kv_heads")
        return self


class PreprocessConfig(Section):
    max_seq_len: int = Field(gt=16)


class LoraConfig(Section):
    r: int = Field(gt=0)
    alpha: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: str | tuple[str, ...]  # "all-linear" or module names
    trainable_tokens: tuple[str, ...]  # embedding rows trained too (e.g. <|im_end|>)
    use_rslora: bool  # scale by alpha / sqrt(r) instead of alpha / r
    use_dora: bool  # weight-decomposed LoRA


class QuantConfig(Section):
    mode: Literal["none", "8bit", "4bit"]
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    compute_dtype: Literal["float32", "bfloat16", "float16"]


class SpeedConfig(Section):
    """GPU speed-ups of the train stage, resolved for the machine by pipeline/training/speed.py (a
    missing package is a ConfigError there; a CUDA-only option falls back on a CPU)."""

    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "flex_attention"]
    liger_kernel: bool  # Liger's Triton kernels: fused linear cross-entropy, RMSNorm, RoPE, SwiGLU
    torch_compile: bool
    auto_batch_size: bool  # halve the micro-batch on out-of-memory (Trainer auto_find_batch_size)


class TrainConfig(Section):
    epochs: float = Field(gt=0)
    lr: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(gt=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    scheduler: str
    weight_decay: float = Field(ge=0)
    seed: int
    bf16: bool
    gradient_checkpointing: bool
    save_steps: int = Field(gt=0)  # checkpoint every N optimizer steps (for resume)
    packing: bool  # flatten each batch into one row; position_ids keep conversations apart
    lora: LoraConfig
    quantization: QuantConfig
    speed: SpeedConfig


class EvalSetConfig(Section):
    """One extra held-out set: a conversation file in any ingest format, or a probe file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(min_length=1)  # relative to the project root
    format: Format | Literal["probes"]  # probes: {id, category, prompt | messages} (safety.py)
    encoding: Encoding
    # reference: the last assistant turn is the right answer; unseen: a topic absent from
    # training, where a cautious, on-topic answer that refers to a doctor is right; safety: probes.
    kind: Literal["reference", "unseen", "safety"]
    trained_only: bool  # keep only questions whose reference answer is in the training split


class BootstrapConfig(Section):
    resamples: int = Field(ge=1000)
    seed: int


class EvaluateConfig(Section):
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    max_samples: int = Field(ge=0)  # 0: the whole test split
    sample_seed: int  # the seeded sample of the test split, stratified by source and category
    # An answer given to this many different questions is a stock reply: no credit
    stock_reply_min_questions: int = Field(ge=2)
    # Held-out questions (and answers) with a near-duplicate in train: exclude or flag them
    near_duplicates: Literal["exclude", "flag"]
    near_duplicate_threshold: float = Field(gt=0, le=1)  # character-trigram Jaccard
    # multilingual-e5-small similarity to the reference (pipeline/evaluation/semantic.py): reported,
    # checked for relevance and gated like ROUGE; for free-text references
    semantic: bool
    report_samples: int = Field(ge=0)  # side-by-side answers per set shown in the report
    sets: tuple[EvalSetConfig, ...]
    safety_probes: str | None  # JSON Lines of {id, category, prompt}; null: no probes
    bootstrap: BootstrapConfig
    judge: JudgeConfig  # optional LLM judge (pipeline/evaluation/judge.py); endpoint null: off
    gate: GateConfig

    @model_validator(mode="after")
    def _unique_sets(self) -> EvaluateConfig:
        names = ["test", *(s.name for s in self.sets), *(["safety"] if self.safety_probes else [])]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluate.sets: duplicate set names in {names}")
        if bad := [s.name for s in self.sets if (s.kind == "safety") != (s.format == "probes")]:
            raise ValueError(f"evaluate.sets {bad}: a probe file is kind safety, format probes")
        return self


class RegisterConfig(Section):
    model_name: str = Field(min_length=1)
    experiment: str = Field(min_length=1)
    tracking_uri: str  # MLFLOW_TRACKING_URI overrides it
    artifact_location: str  # relative paths are resolved against the project root
    allow_dirty: bool  # false: refuse to register from a checkout with uncommitted changes


class ServeConfig(Section):
    """`python -m pipeline serve`: the champion behind an OpenAI-compatible HTTP API."""

    reload_interval_s: float = Field(ge=0)  # alias check period; 0: on every request
    max_prompt_tokens: int = Field(gt=0)  # rendered chat template, system prompt included
    max_new_tokens: int = Field(gt=0)  # cap on max_tokens (and its default)


class Config(Section):
    model: ModelConfig
    ingest: IngestConfig
    validate_: ValidateConfig = Field(alias="validate")
    split: SplitConfig
    tiny: TinyModelConfig
    preprocess: PreprocessConfig
    train: TrainConfig
    align: AlignConfig  # pipeline/training/align_config.py
    evaluate: EvaluateConfig
    register_: RegisterConfig = Field(alias="register")
    serve: ServeConfig
    root: Path = Field(exclude=True)

    @model_validator(mode="after")
    def _known_primary(self) -> Config:
        # test.<source id>: the test split's questions of one source, a set of its own
        names = ["test", *(f"test.{s.id}" for s in self.ingest.sources)]
        names += [s.name for s in self.evaluate.sets]
        if self.evaluate.gate.primary_set not in names:
            raise ValueError(
                f"evaluate.gate.primary_set {self.evaluate.gate.primary_set!r} is not a set; "
                f"expected one of {names}"
            )
        return self

    @property
    def paths(self) -> Paths:
        return Paths(self.root)

    @property
    def uses_builtin_base(self) -> bool:
        return self.model.base == BUILTIN_BASE


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"override {dotted}={value!r}: '{key}' is not a section")
        node = node[key]
    if leaf not in node:
        raise ConfigError(f"override {dotted}={value!r}: no such key in params.yaml")
    node[leaf] = value


def load_config(
    path: str | Path = "params.yaml",
    overrides: dict[str, Any] | None = None,
    *,
    check_base: bool = True,
) -> Config:
    """Read params.yaml, apply dotted overrides (`{"train.lr": 1e-4}`), validate, freeze.
    `check_base`: also check that `model.base` can be loaded here (pipeline/model_source.py);
    False only to check a config document for another machine (e.g. a GPU profile)."""
    path = Path(path).resolve()
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(tree).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value)
    try:
        cfg = Config.model_validate({**tree, "root": path.parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    if check_base and not cfg.uses_builtin_base:
        from pipeline.model_source import check_model_base

        check_model_base(cfg.model.base, cfg.model.revision, cfg.root)
    return cfg
