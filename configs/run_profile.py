"""Run the pipeline with a profile: `make run PROFILE=configs/qwen2.5-7b-qlora.yaml`.

    python configs/run_profile.py configs/qwen2.5-7b-qlora.yaml           # apply it, run it
    python configs/run_profile.py --print configs/qwen2.5-7b-qlora.yaml   # only say what changes

A profile is a partial params.yaml: the keys a machine or a model needs changed. This script
1. checks it against the typed config (pipeline/config.py): a key that params.yaml does not
   have, or a value of the wrong type, is a ConfigError naming the profile and the key, and
   nothing changes. The model base is not looked up: a GPU profile names a hub model that this
   machine need not hold (the stages check it when they load params);
2. writes its values into params.yaml, every comment and the file's layout kept (a ruamel
   round trip; `dvc exp run -S` would do the same job but rewrites the whole file in its own
   style and drops comments on lists). params.yaml stays the one file the stages read, so DVC
   sees exactly which params changed and `git diff params.yaml` shows the profile;
3. runs `dvc exp run`: the stages the change makes stale, recorded as a DVC experiment
   (`dvc exp show` compares it with the default run). `git checkout params.yaml` goes back.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["dvc", "exp", "run"]


def _pipeline():
    """The project's `pipeline` package, also when this file runs as a script."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import pipeline.config
    import pipeline.errors

    return pipeline


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 2e-4}} -> {"train.lr": 2e-4}; a list is one value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_profile(path: Path, params: Path = ROOT / "params.yaml") -> dict[str, Any]:
    """The profile's leaves (`train.lr` -> value), checked against the typed config."""
    import yaml

    pipeline = _pipeline()
    error = pipeline.errors.ConfigError
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: profile not found") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict) or not tree:
        raise error(f"{path}: expected a mapping of params.yaml sections, e.g. `train: {{lr: 1}}`")
    overrides = leaves(tree)
    try:
        pipeline.config.load_config(params, overrides, check_base=False)
    except error as exc:
        raise error(f"profile {path}: {exc}") from None
    return overrides


def apply(path: Path, params: Path = ROOT / "params.yaml") -> list[str]:
    """Write the profile at `path` into `params` (comments kept); returns `key: old -> new`
    for each value that changed."""
    overrides = read_profile(path, params)
    from pipeline.data.own_data import params_yaml

    y = params_yaml()
    tree = y.load(params.read_text(encoding="utf-8"))
    changes = []
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for key in parents:
            node = node[key]
        if node[leaf] != value:
            changes.append(f"{dotted}: {node[leaf]!r} -> {value!r}")
            node[leaf] = value
    with params.open("w", encoding="utf-8") as out:
        y.dump(tree, out)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="a YAML file under configs/")
    parser.add_argument(
        "--print", action="store_true", help="print the changes and the command; change nothing"
    )
    args = parser.parse_args(argv)
    pipeline = _pipeline()
    try:
        if args.print:
            for key, value in read_profile(args.profile).items():
                print(f"{key}: {value!r}")
        else:
            for change in apply(args.profile):
                print(f"params.yaml: {change}")
    except pipeline.errors.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(" ".join(COMMAND), flush=True)
    if args.print:
        return 0
    # the dvc of this Python's environment (.venv/bin/dvc), else the one on PATH
    local = Path(sys.executable).parent / "dvc"
    dvc = str(local) if local.exists() else shutil.which("dvc")
    if dvc is None:
        print("error: dvc not found: run `make install` (or activate .venv)", file=sys.stderr)
        return pipeline.errors.SetupError.exit_code
    return subprocess.run([dvc, *COMMAND[1:]], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
