"""Merge a registered adapter into its base and save a standalone 16-bit model.

    python -m pipeline export VERSION --out exported/ [--dtype bfloat16] [--overwrite]

The base is loaded unquantized in the chosen dtype (merging into 4-bit weights would lose
precision), the LoRA weights are merged, and the result is saved as safetensors with the
tokenizer and chat template, loadable by any Hugging Face runtime without PEFT.

`--out` must not exist or be empty. `--overwrite` replaces only an earlier export (a folder
holding the `export.json` this command writes), never any other folder.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import ConfigError, RegistryError
from pipeline.io import atomic_dir, is_non_empty, why_protected, write_json
from pipeline.modeling import load_with_adapter
from pipeline.registry import tracking

log = logging.getLogger(__name__)

MARKER = "export.json"  # what marks a folder as an earlier export (and records its source)


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an --out that would lose files the pipeline did not write."""
    why = why_protected(out)
    if why:
        raise ConfigError(f"--out {out}: refusing to write there: {why}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a new or empty folder")
    if not is_non_empty(out):
        return
    if not overwrite:
        raise ConfigError(
            f"--out {out}: folder is not empty; choose a new folder, or pass --overwrite to "
            "replace an earlier export"
        )
    if not (out / MARKER).is_file():
        raise ConfigError(
            f"--out {out}: holds no {MARKER}, so it is not an earlier export; --overwrite "
            "replaces only those (choose a new folder)"
        )


def _version_number(version: str) -> str:
    if not version.isascii() or not version.isdigit() or int(version) < 1:
        raise ConfigError(
            f"export VERSION {version!r}: expected a version number such as 3 "
            "(see `python -m pipeline registry list`)"
        )
    return str(int(version))


def _require_version(cfg: Config, version: str) -> None:
    from mlflow.exceptions import MlflowException

    from pipeline.registry import versions as registry

    name = cfg.register_.model_name
    try:
        registry.client(cfg).get_model_version(name, version)
    except MlflowException as exc:
        if not tracking.is_not_found(exc):
            raise tracking.unavailable(exc, f"reading {name} version {version}") from None
        raise RegistryError(
            f"{name} has no version {version} (see `python -m pipeline registry list`)"
        ) from None


def run(
    cfg: Config, version: str, out: Path, dtype: str = "bfloat16", overwrite: bool = False
) -> Path:
    from pipeline.registry import registered_model

    version = _version_number(version)
    check_target(out, overwrite)
    _require_version(cfg, version)
    uri = f"models:/{cfg.register_.model_name}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        registered, adapter = registered_model.download(uri, Path(tmp))
        spec = replace(registered, quantization="none", dtype=dtype)
        model, tok = load_with_adapter(spec, adapter)
        merged = model.merge_and_unload()
        with atomic_dir(out, marker=MARKER) as target:
            merged.save_pretrained(target, safe_serialization=True)
            tok.save_pretrained(target)
            embedded = Path(registered.source).is_relative_to(tmp)
            base = "embedded" if embedded else registered.source
            write_json(target / MARKER, {"model": uri, "base": base, "dtype": dtype})
    log.info("export: %s merged into %s (%s) at %s", uri, spec.source, dtype, out)
    return out
