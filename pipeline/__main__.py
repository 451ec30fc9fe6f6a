"""The command line: `python -m pipeline <stage>` for each dvc.yaml stage, plus tools.

    python -m pipeline ingest
    python -m pipeline validate [FILE ...] [--format F --encoding E ...]
    python -m pipeline {split,base,preprocess,train,align,evaluate,register}
    python -m pipeline chat "感冒有什么症状？"
    python -m pipeline serve [--host 127.0.0.1] [--port 8000] [--alias champion] [--api-key K]
    python -m pipeline registry {list,promote,rollback,lineage} [VERSION]
    python -m pipeline export VERSION --out DIR [--overwrite]
    python -m pipeline score (--version N | --alias A | --base) [FILE...] [--out DIR]

`serve` puts the champion behind an OpenAI-compatible HTTP API (/v1/chat/completions) and
follows the alias without a restart; beyond loopback it needs an API key (PIPELINE_API_KEY).

`-p/--params` picks the params file and `-S key=value` overrides one value (YAML-parsed), as
in `dvc exp run -S`. Every error prints as one line (`error: ...`) and exits with its code.
"""

from __future__ import annotations

import sys

from pipeline.environment import offline_env, require_project_interpreter

# Before any third-party import: dvc may have started us with a Python that lacks them.
require_project_interpreter(sys.argv[1:])

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from pipeline import STAGES, results, run_stage  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.errors import (  # noqa: E402
    ConfigError,
    DataValidationError,
    IngestError,
    ModelLoadError,
    PipelineError,
    RegistryError,
    SetupError,
)

INTERNAL, INTERRUPTED = 70, 130
EXIT_CODES = {
    0: "success",
    PipelineError.exit_code: "pipeline error (e.g. a refused gate)",
    ConfigError.exit_code: "bad params, override or argument",
    DataValidationError.exit_code: "data validation failed",
    ModelLoadError.exit_code: "a model, tokenizer or adapter could not be loaded",
    RegistryError.exit_code: "MLflow registry / tracking error (unknown version, unreachable)",
    IngestError.exit_code: "a source file cannot be read",
    SetupError.exit_code: "this Python lacks the project's dependencies",
    8: "the LLM judge (evaluate.judge) failed or could not be reached",
    INTERNAL: "unexpected internal error (PIPELINE_TRACEBACK=1 shows the traceback)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}


def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES.items())
    p = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=__doc__.split("\n")[0],
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-p", "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    p.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one param, e.g. -S train.lr=1e-4 (repeatable)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        sp = sub.add_parser(stage, help=f"run the {stage} stage")
        if stage == "validate":
            _validate_args(sp)
    chat = sub.add_parser("chat", help="answer a question with the registered champion")
    chat.add_argument("question")
    chat.add_argument("--alias", default="champion", help="registry alias (default: %(default)s)")
    serve = sub.add_parser("serve", help="serve the champion over an OpenAI-compatible HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--alias", default="champion", help="registry alias (default: %(default)s)")
    serve.add_argument(
        "--api-key",
        default=None,
        help="clients must send `Authorization: Bearer KEY` (default: $PIPELINE_API_KEY; "
        "without a key only a loopback --host is allowed)",
    )
    reg = sub.add_parser("registry", help="list, promote, roll back, show lineage")
    reg.add_argument("action", choices=["list", "promote", "rollback", "lineage"])
    reg.add_argument("version", nargs="?")
    reg.add_argument("--force", action="store_true", help="promote although the gate failed")
    reg.add_argument("--reason", help="why a forced promotion is needed (recorded)")
    score = sub.add_parser("score", help="score a model on any conversation or probe file")
    who = score.add_mutually_exclusive_group(required=True)
    who.add_argument("--version", help="a registered version number")
    who.add_argument("--alias", help="the version a registry alias points at")
    who.add_argument("--base", action="store_true", help="the configured base model")
    score.add_argument(
        "files", nargs="*", type=Path, help="conversation or probe files (none: every probe set)"
    )
    score.add_argument("--out", type=Path, default=None, help="default: reports/score/")
    _own_data_args(sub)
    export = sub.add_parser("export", help="merge a registered adapter into a 16-bit base")
    export.add_argument("version")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    export.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --out (only one)"
    )
    return p


def _own_data_args(sub) -> None:
    from pipeline.config import ENCODINGS, FORMATS

    sp = sub.add_parser(
        "own-data", help="point params.yaml at your own file (no demo data; data/own_data.py)"
    )
    sp.add_argument("file", type=Path, help="your conversations, under data/raw/")
    sp.add_argument("--id", default="own", help="source id (default: %(default)s)")
    sp.add_argument("--format", default="auto", choices=FORMATS, help="default: %(default)s")
    sp.add_argument("--encoding", default="auto", choices=ENCODINGS, help="default: %(default)s")
    sp.add_argument("--question-columns", default="", help="csv/tsv: e.g. title,ask")
    sp.add_argument("--answer-column", default=None, help="csv/tsv: e.g. answer")
    sp.add_argument("--category-column", default=None, help="csv/tsv: e.g. department")
    sp.add_argument("--join", default=None, help="csv/tsv: between question columns")
    sp.add_argument(
        "--keep-demo", action="store_true", help="also train on the demo data (named in reports)"
    )
    sp.add_argument(
        "--max-quarantine", type=float, default=None, help="set validate.max_quarantine_fraction"
    )


def _validate_args(sp: argparse.ArgumentParser) -> None:
    from pipeline.config import ENCODINGS, FORMATS

    sp.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="check these files only (writes nothing; exit 0 when clean); default: the stage",
    )
    sp.add_argument("--format", default="auto", choices=FORMATS, help="default: %(default)s")
    sp.add_argument("--encoding", default="auto", choices=ENCODINGS, help="default: %(default)s")
    sp.add_argument("--question-columns", default="", help="csv/tsv: e.g. title,ask")
    sp.add_argument("--answer-column", default=None, help="csv/tsv: e.g. answer")
    sp.add_argument("--join", default="\n", help="csv/tsv: between question columns")


def _check_files(cfg, args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from pipeline.config import SourceConfig
    from pipeline.data import validate, validation_report

    try:
        source = SourceConfig(
            id="cli",
            path="-",
            format=args.format,
            encoding=args.encoding,
            question_columns=tuple(c for c in args.question_columns.split(",") if c),
            answer_column=args.answer_column,
            join=args.join,
        )
    except ValidationError as exc:
        raise ConfigError("; ".join(e["msg"] for e in exc.errors())) from None
    outcome = validate.check_files(args.files, cfg, source)
    print(validation_report.text(outcome, cfg.validate_.examples))
    if not outcome.clean:
        raise SystemExit(DataValidationError.exit_code)


def _overrides(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PipelineError(f"-S {pair!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def _dispatch(args: argparse.Namespace) -> object:
    """Run the command; a stage's result object is returned."""
    if args.command == "chat":
        from pipeline.serving.chat import check_question

        check_question(args.question)  # a usage error before params or any model load
    cfg = load_config(args.params, _overrides(args.set))
    if args.command == "chat":
        from pipeline.serving import chat

        print(chat.run(cfg, args.question, args.alias))
    elif args.command == "serve":
        from pipeline import serving as serve

        serve.run(cfg, args.host, args.port, args.alias, args.api_key)
    elif args.command == "registry":
        from pipeline.registry import versions as registry

        print(registry.main(cfg, args.action, args.version, args.force, args.reason))
    elif args.command == "export":
        from pipeline.registry import export

        print(export.run(cfg, args.version, args.out, args.dtype, args.overwrite))
    elif args.command == "score":
        from pipeline.evaluation import score

        result = score.run(cfg, args.files, args.version, args.alias, args.base, args.out)
        print(f"{result.model}: report in {result.out / 'report.html'}")
    elif args.command == "own-data":
        from pipeline.data import own_data

        options = {
            "id": args.id,
            "format": args.format,
            "encoding": args.encoding,
            "question_columns": tuple(c for c in args.question_columns.split(",") if c),
            "answer_column": args.answer_column,
            "category_column": args.category_column,
            "join": args.join,
        }
        print(
            own_data.run(
                cfg.root / Path(args.params).name,
                args.file,
                options,
                args.keep_demo,
                args.max_quarantine,
            )
        )
    elif args.command == "validate" and args.files:
        _check_files(cfg, args)
    else:
        return run_stage(args.command, cfg)
    return None


def main(argv: list[str] | None = None) -> None:
    offline_env()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    # The flows run stages through `dvc repro` and read the result object from this file.
    report_to = os.environ.get(results.ENV) if args.command in STAGES else None
    try:
        result = _dispatch(args)
    except Exception as exc:  # noqa: BLE001 - every error leaves as one line and its code
        code, text = _one_line(exc)
        if report_to:
            results.write_error(Path(report_to), code, type(exc).__name__, text)
        if code == INTERNAL and os.environ.get("PIPELINE_TRACEBACK"):
            raise
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    if report_to and result is not None:
        results.write_result(Path(report_to), result)


def _one_line(exc: Exception) -> tuple[int, str]:
    """Exit code and message of an error. Typed errors keep theirs (a validation report may
    follow on further lines); MLflow's errors are registry errors; anything else is a bug."""
    if refused := _mlflow_refused(exc):
        return RegistryError.exit_code, refused
    if isinstance(exc, PipelineError):
        return exc.exit_code, str(exc)
    mlflow_errors = sys.modules.get("mlflow.exceptions")
    if mlflow_errors and isinstance(exc, mlflow_errors.MlflowException):
        first = (exc.message if hasattr(exc, "message") else str(exc)).strip().splitlines()
        return RegistryError.exit_code, f"MLflow: {first[0] if first else type(exc).__name__}"
    first = str(exc).strip().splitlines()
    detail = f": {first[0]}" if first else ""
    return INTERNAL, f"unexpected {type(exc).__name__}{detail} (PIPELINE_TRACEBACK=1 shows where)"


def _mlflow_refused(exc: Exception) -> str | None:
    """A tracking server with logins (docs/team.md) that refused this user: who, where, why.
    MLflow reports a failed login as HTTP 401 and a missing permission as PERMISSION_DENIED
    (403), wrapped or not in the pipeline's registry errors."""
    text = str(getattr(exc, "message", exc))
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(none: MLFLOW_TRACKING_USERNAME unset)")
    server = re.sub(r"//[^/@]*@", "//", os.environ.get("MLFLOW_TRACKING_URI", "the server"))
    if "error code 401" in text or "HTTP 401" in text:
        return (
            f"MLflow: authentication failed for user {user} at {server}: check "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
        )
    if getattr(exc, "error_code", None) == "PERMISSION_DENIED" or "error code 403" in text:
        first = text.strip().splitlines()[0] if text.strip() else "permission denied"
        return f"MLflow: user {user} may not do this at {server}: {first}"
    return None


if __name__ == "__main__":
    main()
