"""The docs site: it builds strictly, its generated params page is fresh, its architecture page
names every module, and the README reaches the main instructions in one click."""

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("params_reference", DOCS / "params_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_params_page_is_the_generators_output():
    generator = _generator()
    committed = (DOCS / "params.md").read_text(encoding="utf-8")
    assert committed == generator.render(), (
        f"docs/params.md is stale (pipeline/config.py or params.yaml changed): run "
        f"`{generator.COMMAND}` and commit docs/params.md"
    )


def _params_rows() -> list[tuple[str, str]]:
    """(dotted key, default cell) of every row of the params page's section tables."""
    page = (DOCS / "params.md").read_text(encoding="utf-8")
    return re.findall(
        r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \| [^\n]*? \| (`[^`]*`|\d+ entr(?:y|ies)|) \|", page, re.M
    )


def test_params_page_names_every_key_of_params_yaml_with_its_value():
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))

    def leaves(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    expected = dict(leaves(params))
    rows = dict(_params_rows())
    assert sorted(rows) == sorted(expected)
    checked, wrong = 0, []
    for key, cell in rows.items():
        if cell.startswith("`"):
            checked += 1
            if yaml.safe_load(cell.strip("`")) != expected[key]:
                wrong.append(f"{key}: page {cell}, params.yaml {expected[key]!r}")
        elif expected[key]:  # "N entries": a list of sections
            assert cell.split()[0] == str(len(expected[key])), key
    assert checked > 80 and wrong == []


def test_params_generator_reads_comments_from_params_yaml():
    """A comment above a key, an inline one, and a key inside a list item (skipped)."""
    text = "a:\n  # why b\n  # more\n  b: 1   # inline\n  c:\n    - d: 2  # item\n  e: x\n"
    assert _generator().yaml_comments(text) == {"a.b": "why b more inline"}


def _architecture_paths() -> set[str]:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    return set(re.findall(r"`(pipeline/[\w/]+\.py)`", page))


def test_architecture_page_names_every_module():
    named = _architecture_paths()
    modules = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "pipeline").rglob("*.py")
        if p.name != "__init__.py" or p.parent == REPO / "pipeline" or p.stat().st_size > 200
    }
    assert sorted(modules - named) == [], "modules missing from docs/architecture.md"


def test_architecture_page_names_only_modules_that_exist():
    assert sorted(p for p in _architecture_paths() if not (REPO / p).exists()) == []


SCREENSHOTS = {"img/eval-report.png": "evaluation.md", "img/gx-data-docs.png": "data.md"}


@pytest.mark.parametrize(("image", "page"), SCREENSHOTS.items())
def test_screenshots_are_small_and_shown(image, page):
    path = DOCS / image
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 300_000
    assert f"]({image})" in (DOCS / page).read_text(encoding="utf-8")


# One click from the README: own data, GPU, nightly retraining, promotion.
ONE_CLICK = [
    "docs/data.md#your-own-data",
    "docs/gpu.md",
    "docs/prefect.md#nightly-retraining",
    "docs/registry.md#registry-operations",
]


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc (and GitHub) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text)


@pytest.mark.parametrize("link", ONE_CLICK)
def test_readme_links_to_the_main_instructions(link):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"]({link})" in readme
    path, _, anchor = link.partition("#")
    page = (REPO / path).read_text(encoding="utf-8")
    if anchor:
        headings = re.findall(r"^#+ (.*)$", page, re.M)
        assert anchor in {_slug(h) for h in headings}, f"{path} has no heading #{anchor}"


def test_readme_links_into_docs_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).exists(), link


def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a page missing from the nav or a
    missing included file fails the build (and `make test`)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "make run" in home and 'href="gpu/"' in home  # the README, links made site-relative
    params = (tmp_path / "site" / "params" / "index.html").read_text(encoding="utf-8")
    assert "train.quantization.mode" in params and "&lt;|im_end|&gt;" in params
