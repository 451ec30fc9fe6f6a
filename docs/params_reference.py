"""Write docs/params.md, the params reference, from the typed config and params.yaml.

    python docs/params_reference.py          # rewrite docs/params.md
    python docs/params_reference.py --check  # exit 1 when docs/params.md is stale

One source each: the keys, their types and bounds come from the pydantic models of
pipeline/config.py (what a run accepts); the defaults are params.yaml's values (what a run
uses); the meaning is params.yaml's comment on the key (inline, or the comment lines just above
it), else the comment on the field in pipeline/config.py. tests/unit/test_docs.py fails when the
committed page differs from this script's output.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "params.md"
COMMAND = "python docs/params_reference.py"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


def _import_config():
    if str(ROOT) not in sys.path:  # run as a script: the project's package, not an installed one
        sys.path.insert(0, str(ROOT))
    from pipeline import config

    return config


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> its comment in params.yaml: the inline `# ...` after the key, preceded by
    the block of full-line comments just above it at the same indentation. Keys inside list
    items are skipped (their fields are documented from the models)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    previous = ""  # the last key: an indented comment right under it continues its inline one
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            indent = len(line) - len(line.lstrip())
            if previous and indent > len(previous.split("\0")[0]) and not block:
                comments[previous.split("\0")[1]] += " " + stripped.lstrip("# ")
            else:
                block.append(stripped.lstrip("# ").rstrip())
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            block, previous = [], ""
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        inline = (
            match["rest"].split("  #", 1)[1].strip().lstrip("# ") if "  #" in match["rest"] else ""
        )
        text_of = " ".join(block + ([inline] if inline else [])).strip()
        if text_of:
            comments[dotted] = text_of
        block = []
        previous = f"{match['indent']}  \0{dotted}" if inline else ""
    return comments


def _fields(model: type) -> dict[str, Any]:
    return getattr(model, "model_fields", None) or model.__pydantic_fields__


def _name(model: type, field: str, info: Any) -> str:
    return info.alias or field


def _code_comments(model: type) -> dict[str, str]:
    """Field name -> the comment on its line in the model's source (pipeline/config.py)."""
    out, block = {}, []
    for line in inspect.getsource(model).splitlines():
        if re.match(r"^    #", line):
            block.append(line.strip().lstrip("# "))
            continue
        match = re.match(r"^    (\w+): [^#]*(?:#\s*(.*))?$", line)
        if match and (block or match[2]):
            out[match[1]] = " ".join(block + [match[2] or ""]).strip()
        block = []
    return out


def _doc(model: type) -> str:
    """The model's own docstring (not an inherited one), first paragraph, one line."""
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _cell(text: str) -> str:
    """Text for a Markdown table cell: `|` escaped, `<...>` shown, not read as HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is tuple:
        return f"list of {_type(args[0])}"
    if annotation is type(None):
        return "`null`"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: Any) -> str:
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >="}
    parts = []
    for meta in info.metadata:
        for attr, sign in signs.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    """params.yaml's value as YAML (flow style); a list of sections as a count."""
    import yaml

    if isinstance(value, dict):
        return ""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return f"{len(value)} {'entry' if len(value) == 1 else 'entries'}"
    if isinstance(value, str) and not value.isprintable():
        return "`" + repr(value).replace("'", '"') + "`"  # "\\n": one line, a YAML string
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return "`" + text.removesuffix("\n").removesuffix("\n...") + "`"


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "__pydantic_fields__")


def _rows(model: type, params: dict, prefix: str, notes: dict[str, str], out: list) -> None:
    code = _code_comments(model)
    for field, info in _fields(model).items():
        name = _name(model, field, info)
        if name == "root":
            continue
        dotted = f"{prefix}{name}"
        annotation = info.annotation
        value = params.get(name) if isinstance(params, dict) else None
        if _is_model(annotation):
            _rows(annotation, value or {}, f"{dotted}.", notes, out)
            continue
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else None
        kind = _type(annotation)
        if _is_model(item):
            kind = f"list of `{item.__name__}` (below)"
        meaning = notes.get(dotted) or code.get(field, "")
        bounds = _bounds(info)
        out.append(
            f"| `{dotted}` | {kind}{f' ({bounds})' if bounds else ''} | {_value(value)} | "
            f"{_cell(meaning)} |"
        )


def _list_models(model: type, found: dict[str, type], prefix: str = "") -> None:
    for field, info in _fields(model).items():
        annotation = info.annotation
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else None
        if _is_model(item):
            found[f"{prefix}{_name(model, field, info)}"] = item
        elif _is_model(annotation):
            _list_models(annotation, found, f"{prefix}{_name(model, field, info)}.")


def render() -> str:
    import yaml

    config = _import_config()
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    params, notes = yaml.safe_load(text), yaml_comments(text)
    lines = [
        "# Parameters",
        "",
        f"<!-- generated by `{COMMAND}` from pipeline/config.py and params.yaml: do not edit -->",
        "",
        "Every key lives in `params.yaml` and is required; `pipeline/config.py` types it and",
        "rejects unknown keys. Change one for a single call with `python -m pipeline <stage>",
        "-S key=value`, for an experiment with `dvc exp run -S key=value`, or a set of them with a",
        "profile (`make run PROFILE=configs/<name>.yaml`, [GPU recipes](gpu.md)).",
    ]
    for section, info in _fields(config.Config).items():
        name = _name(config.Config, section, info)
        if name == "root":
            continue
        lines += ["", f"## {name}", ""]
        doc = _doc(info.annotation)
        if doc:
            lines += [_cell(doc), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        rows: list[str] = []
        _rows(info.annotation, params[name], f"{name}.", notes, rows)
        lines += rows
    found: dict[str, type] = {}
    _list_models(config.Config, found)
    for dotted, model in found.items():
        lines += ["", f"## Entries of `{dotted}`: `{model.__name__}`", ""]
        doc = _doc(model)
        if doc:
            lines += [_cell(doc), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        code = _code_comments(model)
        for field, info in _fields(model).items():
            default = "" if info.is_required() else _value(info.default)
            bounds = _bounds(info)
            lines.append(
                f"| `{_name(model, field, info)}` | {_type(info.annotation)}"
                f"{f' ({bounds})' if bounds else ''} | {default or 'required'} | "
                f"{_cell(code.get(field, ''))} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    page = render()
    if "--check" in argv:
        stale = not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page
        if stale:
            print(f"{PAGE.relative_to(ROOT)} is stale: run `{COMMAND}`", file=sys.stderr)
        return int(stale)
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
