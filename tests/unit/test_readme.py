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
