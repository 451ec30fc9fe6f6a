"""Stage `register`: log the adapter as an MLflow model, register a new version, act on the gate.

    python -m pipeline register

Every new version gets the alias `challenger`. `champion` moves to it only when the gate that
`evaluate` decided (reports/gate.json) passed; each rule's value and verdict are set as tags on
the version, and lineage tags record what made it: git commit and whether the checkout differed
from it (`register.allow_dirty: false` refuses to register then), data / code / adapter / params
hashes (pipeline/registry/fingerprint.py),
base model and revision, tokenizer and chat-template fingerprint, library versions, and the
validation report logged on the run. A refused version stays registered for inspection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, replace
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data.preference import align_lineage
from pipeline.errors import PipelineError
from pipeline.evaluation import keys
from pipeline.evaluation.results import GateRecord
from pipeline.io import write_json
from pipeline.modeling import ModelSpec
from pipeline.registry import fingerprint, tracking
from pipeline.registry import versions as registry

log = logging.getLogger(__name__)

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "safetensors",
    "mlflow",
    "datasets",
    "great-expectations",
    "dvc",
)


def _sha256(path: Path) -> str:
    """The file's plain SHA-256: what `sha256sum FILE` prints."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_sha256(*paths: Path) -> str:
    """JSON {file name: plain SHA-256} of existing files, each checkable with `sha256sum`."""
    return json.dumps({p.name: _sha256(p) for p in paths if p.is_file()}, sort_keys=True)


def check_clean(cfg: Config, git: fingerprint.GitState) -> None:
    """With `register.allow_dirty: false`, refuse a checkout that differs from its commit (or
    one that git cannot show clean): the version's git_commit would not reproduce it."""
    if cfg.register_.allow_dirty or git.dirty == "false":
        return
    if git.dirty == "unknown":
        why = f"{cfg.root} is not a git checkout (or git is missing): cannot prove it is clean"
    else:
        files = git.tags()["dirty_files"]
        why = f"uncommitted changes in {len(git.dirty_files)} file(s): {files}"
    raise PipelineError(
        f"register: refusing to register from a dirty checkout: {why}. Commit them (git add, "
        "git commit), or set register.allow_dirty: true in params.yaml"
    )


def lineage(cfg: Config, git: fingerprint.GitState | None = None) -> dict[str, str]:
    """Tags that let a user trace and reproduce a version."""
    paths = cfg.paths
    git = git or fingerprint.git_state(cfg.root)
    adapter = paths.final_adapter(cfg.align.enabled)
    tok_files = [
        adapter / n for n in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    ]
    tags = {
        **git.tags(),
        "data_sha256": fingerprint.data_sha256(cfg),
        "code_sha256": fingerprint.code_sha256(cfg),
        "params_md5": fingerprint.params_md5(cfg),
        "train_split_sha256": _sha256(paths.split_file("train")),
        "adapter_sha256": _sha256(adapter / "adapter_model.safetensors"),
        "adapter_files_sha256": _files_sha256(*sorted(adapter.iterdir())),
        "params_sha256": fingerprint.params_sha256(cfg),
        "base_model": cfg.model.base,
        "base_revision": cfg.model.revision
        if not cfg.uses_builtin_base
        else "built:" + _sha256(paths.base_dir / "model.safetensors")[:16],
        "tokenizer_sha256": _files_sha256(*tok_files),
        "libraries": ", ".join(f"{n}=={dist_version(n)}" for n in LIBRARIES),
    }
    tags |= align_lineage(cfg)  # method, beta, the preference data's md5
    tags |= {f"dvc_md5.{p}": md5 for p, md5 in tracking.dvc_lock_hashes(cfg.root).items()}
    return tags


def _requirements() -> list[str]:
    """What the pyfunc model needs to load (a subset of LIBRARIES, pinned as installed)."""
    names = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "safetensors", "mlflow")
    return [f"{n}=={dist_version(n)}" for n in names]


def _log_model(cfg: Config, registered_name: str):
    """Log the adapter (+ the tiny base, which exists nowhere else) as a pyfunc code model
    (pipeline/registry/registered_model.py: no pickle) and register it."""
    from pipeline.registry import registered_model

    paths = cfg.paths
    spec = ModelSpec.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        # A hub base is referenced by id and revision, never copied into the registry.
        replace(spec, source="" if cfg.uses_builtin_base else spec.source).save(Path(tmp))
        adapter = paths.final_adapter(cfg.align.enabled)  # the aligned one where align ran
        artifacts = {"adapter": str(adapter), "spec": str(Path(tmp) / "base_model.json")}
        if cfg.uses_builtin_base:
            artifacts["base"] = str(paths.base_dir)
        return registered_model.log_model(artifacts, _requirements(), registered_name)


@dataclass(frozen=True)
class RegisterResult:
    """The registered version, its aliases and the gate decision it carries (also
    reports/registration.json, a DVC output)."""

    model_name: str
    version: int
    run_id: str
    aliases: list[str]
    awaiting_approval: bool  # passed the gate; `champion` waits for a reviewer
    gate: GateRecord  # reports/gate.json, as evaluate decided it

    @property
    def promoted(self) -> bool:
        return registry.CHAMPION in self.aliases

    def __str__(self) -> str:
        return f"register: {self.model_name} version {self.version} ({', '.join(self.aliases)})"

    def to_dict(self) -> dict[str, Any]:
        """reports/registration.json."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "awaiting_approval": self.awaiting_approval,
            "gate": self.gate.to_dict(),
        }


def stale_champion(c, name: str, gate: dict[str, Any]) -> str | None:
    """Why `champion` must not move although the gate passed: the registry's champion is not
    the one `evaluate` compared against (it moved, or appeared, since). None when it is the
    same, or for a gate.json that does not say. A registry that cannot answer raises."""
    if "champion_version" not in gate:
        return None
    now, then = registry.champion_version(c, name), gate["champion_version"]
    if now == then:
        return None
    held, compared = (f"version {v}" if v else "no champion" for v in (now, then))
    return (
        f"the registry has {held} as champion but evaluate compared against {compared}; "
        "rerun evaluate"
    )


def run(cfg: Config) -> RegisterResult:
    import mlflow

    git = fingerprint.git_state(cfg.root)
    check_clean(cfg, git)  # before anything is read, logged or registered
    paths = cfg.paths
    gate = GateRecord.read(paths.reports / "gate.json")
    decision = gate.decision
    name = cfg.register_.model_name
    tags = {f"lineage.{k}": v for k, v in lineage(cfg, git).items()}
    with tracking.resume_run(cfg) as active:
        summary = paths.validation_reports / "summary.json"
        if summary.exists():
            mlflow.log_artifact(str(summary), artifact_path="validation")
            tags["lineage.validation_report"] = (
                f"runs:/{active.info.run_id}/validation/summary.json"
            )
        mlflow.set_tags({keys.GATE_PROMOTE_TAG: str(decision.promote), **tags})
        info = _log_model(cfg, name)
        version = str(info.registered_model_version)
        c = registry.client(cfg)
        c.set_registered_model_alias(name, registry.CHALLENGER, version)
        tags |= {keys.GATE_PROMOTE_TAG: str(decision.promote), "run_id": active.info.run_id}
        tags |= {keys.gate_tag_key(r.rule): r.tag() for r in decision.rules}
        seen = json.loads((paths.reports / "gate.json").read_text(encoding="utf-8"))
        if "champion_version" in seen:  # what `registry promote` checks again later
            tags[keys.GATE_CHAMPION_TAG] = keys.champion_tag(seen["champion_version"])
        for key, value in tags.items():
            c.set_model_version_tag(name, version, key, value)
        awaiting = decision.promote and cfg.evaluate.gate.require_approval
        stale = stale_champion(c, name, seen) if decision.promote and not awaiting else None
        promoted = decision.promote and not awaiting and stale is None
        if promoted:
            registry.set_champion(c, name, version)
        elif stale:
            c.set_model_version_tag(name, version, "gate.stale_champion", stale)
    failed = [r.rule for r in decision.rules if not r.passed]
    verdict = (
        f"NOT promoted (failed: {', '.join(failed)})"
        if not decision.promote
        else f"passed the gate; champion NOT moved: {stale}"
        if stale
        else "passed the gate; champion NOT moved: evaluate.gate.require_approval is on "
        f"(approve it in the nightly flow, or `python -m pipeline registry promote {version}`)"
        if awaiting
        else "promoted to champion"
    )
    log.info("register: %s version %s %s", name, version, verdict)
    result = RegisterResult(
        name,
        int(version),
        active.info.run_id,
        [registry.CHALLENGER] + ([registry.CHAMPION] if promoted else []),
        awaiting,
        gate,
    )
    write_json(paths.reports / "registration.json", result.to_dict())
    return result
