"""A stage's result across a process boundary, written and read in one place.

The flows run each stage through `dvc repro`, so the stage's `run(cfg)` returns its frozen
result dataclass in another process. When the environment variable `PIPELINE_RESULT` names a
file, `python -m pipeline <stage>` writes there, as JSON, what `run` returned
(`{"result": ...}`) or the error it raised (`{"error": {"type", "exit_code", "message"}}`);
`read` re-raises the same typed error or returns the JSON, which `decode` turns back into the
same dataclass (by the return annotation of the stage's `run`). JSON rather than pickle: the
file is readable, and a reader decodes only the results it needs (decoding imports the stage
module that owns the class: `train`'s imports torch).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import STAGE_MODULES, errors

ENV = "PIPELINE_RESULT"


class StageFailed(errors.PipelineError):
    """A stage that ended without a typed error of its own: an unexpected exception in the
    stage (the CLI's exit code 70), or DVC failing before or around the stage's command."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):  # dicts, and read-only mappings such as EvalMetrics
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_result(path: Path, result: Any) -> None:
    """What a stage's `run` returned, for the process that started the stage."""
    Path(path).write_text(json.dumps({"result": _jsonable(result)}, ensure_ascii=False))


def write_error(path: Path, exit_code: int, exc_type: str, message: str) -> None:
    """The error a stage ended with (the CLI's exit code and its one-line message)."""
    error = {"type": exc_type, "exit_code": exit_code, "message": message}
    Path(path).write_text(json.dumps({"error": error}, ensure_ascii=False))


def read(path: Path, stage: str) -> Any:
    """The stage's result as JSON (`decode` makes it the dataclass again); raises the stage's
    typed error when it failed. The file must exist (the caller knows the stage's command ran)."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageFailed(f"stage {stage}: no readable result in {path}: {exc}") from None
    if "error" in content:
        error = content["error"]
        raise _error(error["type"], int(error["exit_code"]), error["message"])
    return content["result"]


def _error(name: str, exit_code: int, message: str) -> errors.PipelineError:
    """The typed error by its name, else the one the CLI's exit code stands for (an MLflow
    error leaves as a registry error), else StageFailed with that code."""
    typed = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.PipelineError)
    ]
    by_name = next((c for c in typed if c.__name__ == name), None)
    same_code = [c for c in typed if c.exit_code == exit_code and c is not errors.PipelineError]
    # the most general of them (RegistryError, not its subclass RegistryUnavailable)
    by_code = [c for c in same_code if not any(c is not o and issubclass(c, o) for o in same_code)]
    cls = by_name or (by_code[0] if len(by_code) == 1 else None)
    return cls(message) if cls else StageFailed(message, exit_code)


def result_type(stage: str) -> type:
    """The class a stage's `run` returns (its return annotation)."""
    run = importlib.import_module(STAGE_MODULES[stage]).run
    return typing.get_type_hints(run)["return"]


def decode(stage: str, data: Any) -> Any:
    """The result object `read` returned as JSON, as the stage's `run` returned it."""
    return _decode(result_type(stage), data, stage)


def _decode(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or value is None:
        return value
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = {f.name for f in dataclasses.fields(hint)}
        unknown = set(value) - fields
        if unknown:
            raise StageFailed(f"{where}: {hint.__name__} has no field(s) {sorted(unknown)}")
        return hint(**{k: _decode(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        for arg in (a for a in args if a is not type(None)):
            try:
                return _decode(arg, value, where)
            except (TypeError, ValueError, StageFailed):
                continue
        return value
    if origin is dict:
        return {k: _decode(args[1], v, f"{where}[{k}]") for k, v in value.items()}
    if origin is tuple:
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_decode(item, v, where) for v in value)
    if origin is list:
        return [_decode(args[0], v, where) for v in value]
    if isinstance(hint, type) and issubclass(hint, Path | enum.Enum):
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, Mapping) and hint is not dict:
        return hint(value)  # a mapping class built from its plain form (EvalMetrics)
    return value


def output_env(path: Path) -> dict[str, str]:
    """The environment for a stage process that should report its result to `path`."""
    return {**os.environ, ENV: str(path), "PYTHONUNBUFFERED": "1"}
