"""The command line: `python -m pipeline <stage>` for each dvc.yaml stage, plus tools.

    python -m pipeline ingest
    python -m pipeline validate [FILE ...] [--format F --encoding E ...]
    python -m pipeline {split,base,preprocess,train,evaluate,register}
    python -m pipeline chat "感冒有什么症状？"
    python -m pipeline serve [--host 127.0.0.1] [--port 8000] [--alias champion]
    python -m pipeline registry {list,promote,rollback,lineage} [VERSION]
    python -m pipeline export VERSION --out DIR
    python -m pipeline score (--version N | --alias A | --base) FILE... [--out DIR]

`serve` puts the champion behind an OpenAI-compatible HTTP API (/v1/chat/completions) and
follows the alias without a restart.

`-p/--params` picks the params file and `-S key=value` overrides one value (YAML-parsed), as
in `dvc exp run -S`. Typed pipeline errors print as one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

import yaml

from pipeline import STAGES
from pipeline.config import load_config
from pipeline.errors import ConfigError, DataValidationError, PipelineError

OFFLINE_DEFAULTS = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
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
    score.add_argument("files", nargs="+", type=Path, help="conversation or probe files")
    score.add_argument("--out", type=Path, default=None, help="default: reports/score/")
    export = sub.add_parser("export", help="merge a registered adapter into a 16-bit base")
    export.add_argument("version")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    return p


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

    from pipeline import validate
    from pipeline.config import SourceConfig

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
    print(outcome.text(cfg.validate_.examples))
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


def _dispatch(args: argparse.Namespace) -> None:
    cfg = load_config(args.params, _overrides(args.set))
    if args.command == "chat":
        from pipeline import chat

        print(chat.run(cfg, args.question, args.alias))
    elif args.command == "serve":
        from pipeline import serve

        serve.run(cfg, args.host, args.port, args.alias)
    elif args.command == "registry":
        from pipeline import registry

        print(registry.main(cfg, args.action, args.version, args.force, args.reason))
    elif args.command == "export":
        from pipeline import export

        print(export.run(cfg, args.version, args.out, args.dtype))
    elif args.command == "score":
        from pipeline import score

        result = score.run(cfg, args.files, args.version, args.alias, args.base, args.out)
        print(f"{result.model}: report in {result.out / 'report.html'}")
    elif args.command == "validate" and args.files:
        _check_files(cfg, args)
    else:
        importlib.import_module(f"pipeline.{args.command}").run(cfg)


def main(argv: list[str] | None = None) -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        _dispatch(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
