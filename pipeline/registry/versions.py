"""Registry operations on the MLflow model: list, promote, roll back, show lineage.

    python -m pipeline registry list
    python -m pipeline registry promote VERSION [--force --reason "why"]
    python -m pipeline registry rollback
    python -m pipeline registry lineage VERSION

`champion` is the alias that `chat` and serving follow. Every move of it is recorded on the
registered model (tag `champion_history`, oldest first), so `rollback` can restore the one
before. A version whose gate failed is promoted only with --force and a reason, both recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.errors import RegistryError
from pipeline.registry import tracking

if TYPE_CHECKING:
    from pipeline.modeling import ModelSpec

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"


def client(cfg: Config):
    from mlflow import MlflowClient

    tracking.setup(cfg)
    return MlflowClient()


def _history(c, name: str) -> list[str]:
    tags = c.get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def _version(c, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version(name, str(version))
    except MlflowException as exc:
        if not tracking.is_not_found(exc):
            raise tracking.unavailable(exc, f"reading {name} version {version}") from None
        raise RegistryError(f"{name} has no version {version}") from None


def alias_version(c, name: str, alias: str) -> str | None:
    """The version `alias` points at; None only when the registry says the alias (or the model)
    does not exist. A registry that cannot answer raises RegistryUnavailable: an outage must
    never read as "no champion" (a gate would then decide without it)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if tracking.is_not_found(exc):
            return None
        raise tracking.unavailable(exc, f"reading alias {alias!r} of {name}") from None


def champion_version(c, name: str) -> str | None:
    return alias_version(c, name, CHAMPION)


def set_champion(c, name: str, version: str) -> None:
    """Move `champion` and append the move to the model's history."""
    c.set_registered_model_alias(name, CHAMPION, str(version))
    history = _history(c, name) + [str(version)]
    c.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))


def download_version(
    cfg: Config, into: Path, version: str | None = None, alias: str | None = None
) -> tuple[str, ModelSpec, Path] | None:
    """A registered version (by number, or the one an alias points at): its version, base spec
    and adapter, downloaded into `into`; None when the alias points at nothing."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import registered_model

    c = client(cfg)
    name = cfg.register_.model_name
    if version is None:
        version = alias_version(c, name, alias or CHAMPION)
        if version is None and alias not in (None, CHAMPION):
            raise RegistryError(f"registry: no version of {name} has alias {alias!r}")
        if version is None:
            return None
    uri = f"models:/{name}/{version}"
    try:
        spec, adapter = registered_model.download(uri, into)
    except MlflowException as exc:
        if not tracking.is_not_found(exc):
            raise tracking.unavailable(exc, f"downloading {uri}") from None
        raise RegistryError(f"registry: {name} has no version {version!r}") from None
    return version, spec, adapter


def promote(cfg: Config, version: str, force: bool = False, reason: str | None = None) -> str:
    """Move `champion` to `version` (a reviewer's `registry promote`, the nightly flow's
    approval). Refused unless --force (with a reason, recorded) when its gate failed, or when
    its gate compared it against another champion than the one the registry holds now."""
    name = cfg.register_.model_name
    c = client(cfg)
    mv = _version(c, name, version)
    refusals = []
    if mv.tags.get("gate.promote") != "True":
        refusals.append(f"failed its gate ({_failed_rules(mv.tags)})")
    if stale := stale_gate(c, name, version, mv.tags):
        refusals.append(stale)
    if refusals:
        if not force:
            raise RegistryError(
                f"{name} version {version} {'; and '.join(refusals)}"
                f'{"" if stale else ";"} promote anyway with --force --reason "..."'
            )
        if not reason:
            raise RegistryError("--force needs --reason: it is recorded on the version")
        c.set_model_version_tag(name, str(version), "forced_promotion_reason", reason)
    set_champion(c, name, str(version))
    return f"{name} version {version} is now {CHAMPION}"


def stale_gate(c, name: str, version: str, tags: dict[str, str]) -> str | None:
    """Why the gate of `version` (its tags) no longer speaks for a promotion: it compared the
    version against another champion than the registry's now (the champion moved, or
    appeared, while the version waited for a reviewer). None when it is the same, when the
    version is the champion already, or for a version registered before the tag."""
    from pipeline.evaluation import keys

    if keys.GATE_CHAMPION_TAG not in tags:
        return None
    now = champion_version(c, name)
    then = keys.champion_from_tag(tags[keys.GATE_CHAMPION_TAG])
    if now == then or now == str(version):
        return None
    held, compared = (f"version {v}" if v else "no champion" for v in (now, then))
    return (
        f"was gated when the registry held another champion: its gate compared it against "
        f"{compared}, but the champion is now {held}; gate it again against the current "
        "champion (`dvc repro --force --single-item evaluate`, then `dvc repro register`: a new "
        "version), or"
    )


def rollback(cfg: Config) -> str:
    """Give `champion` back to the version that held it before the current one."""
    name = cfg.register_.model_name
    c = client(cfg)
    current = champion_version(c, name)
    history = _history(c, name)
    while history and history[-1] == current:
        history.pop()
    if current is None or not history:
        raise RegistryError(f"{name}: no earlier champion to roll back to")
    previous = history[-1]
    c.set_registered_model_alias(name, CHAMPION, previous)
    c.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    return f"{name}: {CHAMPION} rolled back from version {current} to version {previous}"


def _failed_rules(tags: dict[str, str]) -> str:
    failed = [
        k.removeprefix("gate.") for k, v in tags.items() if k.startswith("gate.") and "fail" in v
    ]
    return "failed: " + ", ".join(failed) if failed else "no gate verdict recorded"


def list_versions(cfg: Config) -> list[dict[str, Any]]:
    """Every version: aliases, gate verdict, and its run's numbers on the set its gate decided
    on (correctness, ROUGE-L) and its safety probes' pass rate, read back through the names
    `evaluate` logged them with (pipeline/evaluation/keys.py)."""
    from pipeline.evaluation import keys

    name = cfg.register_.model_name
    c = client(cfg)
    rows = []
    found = c.search_model_versions(f"name='{name}'")
    for number in sorted(int(m.version) for m in found):
        mv = c.get_model_version(name, str(number))  # search results carry no aliases
        data = c.get_run(mv.run_id).data if mv.run_id else None
        shown = keys.summary(
            data.metrics if data else {},
            data.tags if data else {},
            cfg.evaluate.gate.primary_set,
        )
        rows.append(
            {
                "version": int(mv.version),
                "aliases": list(mv.aliases),
                "gate": "pass" if mv.tags.get(keys.GATE_PROMOTE_TAG) == "True" else "fail",
                "set": shown.primary_set,
                "correctness": shown.correctness,
                "rouge_l": shown.rouge_l,
                "safety": shown.safety,
            }
        )
    return rows


def lineage(cfg: Config, version: str) -> dict[str, str]:
    name = cfg.register_.model_name
    mv = _version(client(cfg), name, version)
    return {
        k.removeprefix("lineage."): v
        for k, v in sorted(mv.tags.items())
        if k.startswith("lineage.")
    }


def latest_version(cfg: Config) -> dict[str, Any] | None:
    """The highest registered version and its tags (None when nothing is registered yet)."""
    name = cfg.register_.model_name
    c = client(cfg)
    found = c.search_model_versions(f"name='{name}'")
    if not found:
        return None
    mv = c.get_model_version(name, str(max(int(m.version) for m in found)))
    return {"version": int(mv.version), "tags": dict(mv.tags), "aliases": list(mv.aliases)}


def snapshot(cfg: Config) -> dict[str, Any]:
    """What `restore` needs to undo a registration that failed half-way."""
    name = cfg.register_.model_name
    c = client(cfg)
    latest = latest_version(cfg)
    return {
        "latest": latest["version"] if latest else 0,
        "champion": champion_version(c, name),
        "history": ",".join(_history(c, name)) if latest else None,
    }


def restore(cfg: Config, before: dict[str, Any]) -> list[int]:
    """Delete versions registered after `before` (a `snapshot`) and put `champion` and its
    history back: a failed registration leaves no half-tagged version behind."""
    name = cfg.register_.model_name
    c = client(cfg)
    found = c.search_model_versions(f"name='{name}'")
    removed = sorted(int(m.version) for m in found if int(m.version) > before["latest"])
    for number in removed:
        c.delete_model_version(name, str(number))
    if before["latest"] == 0 and removed:
        c.delete_registered_model(name)  # it did not exist before this registration
        return removed
    if before["champion"] and champion_version(c, name) != before["champion"]:
        c.set_registered_model_alias(name, CHAMPION, before["champion"])
    if before["history"] is not None:
        c.set_registered_model_tag(name, HISTORY_TAG, before["history"])
    return removed


def format_table(rows: list[dict[str, Any]]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines = [
        f"{'version':>7}  {'aliases':<22} {'gate':<5} {'set':<14} "
        f"{'correct':>8} {'rouge_l':>8} {'safety':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['version']:>7}  {','.join(r['aliases']):<22} {r['gate']:<5} {r['set']:<14} "
            f"{num(r['correctness']):>8} {num(r['rouge_l']):>8} {num(r['safety']):>8}"
        )
    return "\n".join(lines)


def main(cfg: Config, action: str, version: str | None, force: bool, reason: str | None) -> str:
    if action == "list":
        return format_table(list_versions(cfg))
    if action == "rollback":
        return rollback(cfg)
    if version is None:
        raise RegistryError(f"registry {action} needs a VERSION")
    if action == "promote":
        return promote(cfg, version, force, reason)
    return json.dumps(lineage(cfg, version), indent=2, ensure_ascii=False)
