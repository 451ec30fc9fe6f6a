"""The README's commands exist and say what the project really does."""

import re
import shlex

import pytest
import yaml

from pipeline.__main__ import _parser
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def quick_start() -> list[str]:
    """The commands of the first fenced block after the Quick start heading (as CI reads it)."""
    heading = re.search(r"^#+ .*quick ?start.*$", README, re.I | re.M)
    block = re.search(r"```[^\n]*\n(.*?)```", README[heading.end() :], re.S)
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [re.sub(r"\s+#.*$", "", line) for line in lines if line and not line.startswith("#")]


def test_quick_start_is_two_make_targets_and_ci_runs_the_second():
    commands = quick_start()
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for command in commands:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("line", sorted(set(re.findall(r"python -m pipeline [^\n`|]*", README))))
def test_pipeline_commands_parse(line):
    argv = shlex.split(line.split("#")[0])[3:]
    argv = [a for a in argv if a not in ("...", "<stage>", "FILE")] or ["--help"]
    if argv == ["--help"] or "<" in " ".join(argv):
        return
    _parser().parse_args(argv)


def test_flow_modules_named_in_the_readme_exist():
    for module in re.findall(r"python -m (flows\.\w+)", README):
        assert (REPO / (module.replace(".", "/") + ".py")).exists(), module


def test_params_table_names_real_keys():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rows = re.findall(r"^\| `([a-z_.]+)`", README, re.M)
    assert len(rows) > 15
    for row in rows:
        node = params
        for key in row.split("."):
            assert key in node, row
            node = node[key]


def test_gpu_recipe_is_a_valid_override_of_params():
    from pipeline.config import load_config

    recipe = re.search(r"## GPU recipe.*?```yaml\n(.*?)```", README, re.S).group(1)
    overrides = {}

    def walk(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                overrides[f"{prefix}{k}"] = v

    walk(yaml.safe_load(recipe))
    cfg = load_config(REPO / "params.yaml", overrides, check_base=False)  # for a GPU machine
    assert cfg.model.base == "Qwen/Qwen2.5-7B-Instruct" and cfg.train.quantization.mode == "4bit"


def _params_rows() -> list[tuple[list[str], str]]:
    """(dotted keys, defaults cell) of each params-table row: `a.b` / `c` names a.b and a.c."""
    rows = []
    row = re.compile(r"^\| (`[a-z_.]+`(?:(?: /|,) `[a-z_]+`)*) \| ([^|]*) \|", re.M)
    for keys, defaults in row.findall(README):
        names = re.findall(r"`([a-z_.]+)`", keys)
        parent = names[0].rsplit(".", 1)[0]
        rows.append(([names[0]] + [f"{parent}.{n}" for n in names[1:]], defaults.strip()))
    return rows


def _value(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def test_params_table_defaults_are_params_yaml_values():
    """Every default the table shows as values (`x` / `y`, one per key) is params.yaml's; a
    descriptive cell ("see file", "2 questions") or a list / section value is not compared."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    checked, wrong = 0, []
    for keys, cell in _params_rows():
        only_values = re.fullmatch(r"`[^`]*`(?:(?: /|,) `[^`]*`)*", cell)
        values = re.findall(r"`([^`]*)`", cell) if only_values else []
        nodes = [_value(params, key) for key in keys]
        if not values or all(isinstance(n, (dict, list)) for n in nodes):
            continue
        if len(values) != len(keys):
            wrong.append(f"{' / '.join(keys)}: {len(values)} values for {len(keys)} keys")
            continue
        for key, shown, node in zip(keys, values, nodes, strict=True):
            checked += 1
            if yaml.safe_load(shown) != node:
                wrong.append(f"{key}: README {shown}, params.yaml {node!r}")
    assert checked > 40
    assert wrong == []
