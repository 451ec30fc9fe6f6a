"""Preference pairs (a prompt, a chosen and a rejected answer) in the formats users have.

- `trl`: `{"prompt", "chosen", "rejected"}` as TRL's preference datasets hold them: strings, or
  conversational (`prompt` a list of messages ending with the user's turn; `chosen` / `rejected`
  one assistant message each, `[{"role": "assistant", "content": ...}]`).
- `medicalgpt`: MedicalGPT's reward / DPO files, `{"question", "response_chosen",
  "response_rejected"}` with an optional `system` and `history` (`[[question, answer], ...]`).
- `auto`: by the keys of each record.

Every record may also carry `id` and `category`. A file is validated as a whole (valid JSON, the
schema, no empty text, chosen different from rejected after folding case, punctuation and
spaces); personal data (ID numbers, mobile numbers, e-mail addresses) is replaced by its
placeholder before a pair goes anywhere (pipeline/data/checks.py). Problems are one
DataValidationError naming file:line of each (the first few).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data import checks
from pipeline.errors import DataValidationError

META_KEYS = frozenset({"id", "category"})
SCHEMAS = {
    "trl": (frozenset({"prompt", "chosen", "rejected"}), frozenset()),
    "medicalgpt": (
        frozenset({"question", "response_chosen", "response_rejected"}),
        frozenset({"system", "history"}),
    ),
}
SHOWN_PROBLEMS = 5

if TYPE_CHECKING:
    from pipeline.config import Config


@dataclass(frozen=True)
class PreferencePair:
    """One validated, redacted pair: `prompt` as chat messages (the user's turn last)."""

    id: str
    where: str  # file:line
    prompt: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    category: str | None = None

    def as_trl(self, system: str | None = None) -> dict[str, Any]:
        """TRL's conversational preference row; `system` prepended unless the prompt has one."""
        prompt = list(self.prompt)
        if system and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": system}, *prompt]
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }

    def swapped(self) -> PreferencePair:
        """The same pair with chosen and rejected exchanged (a deliberately wrong one)."""
        return PreferencePair(
            self.id, self.where, self.prompt, self.rejected, self.chosen, self.category
        )


@dataclass
class PreferenceFile:
    pairs: list[PreferencePair] = field(default_factory=list)
    redacted: int = 0  # texts in which personal data was replaced


class _Bad(Exception):
    """One record's problem (turned into file:line by `read_pairs`)."""


def detect_format(obj: dict[str, Any]) -> str:
    for name, (required, _) in SCHEMAS.items():
        if required <= obj.keys():
            return name
    raise _Bad(
        "not a preference pair: expected keys prompt / chosen / rejected (TRL) or question / "
        f"response_chosen / response_rejected (MedicalGPT), got {sorted(obj)}"
    )


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{what}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise _Bad(f"{what}: empty")
    return value.strip()


def _answer(value: Any, what: str) -> str:
    """A string, or TRL's conversational answer: a list of one assistant message."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise _Bad(f"{what}: expected a string or [{{'role': 'assistant', 'content': ...}}]")
        return _text(value[0].get("content"), f"{what}.content")
    return _text(value, what)


def _messages(value: Any) -> list[dict[str, str]]:
    """A TRL prompt: a string (one user turn) or messages, optional system first, user and
    assistant alternating, the user's turn last."""
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, "prompt")}]
    if not isinstance(value, list) or not value:
        raise _Bad("prompt: expected a string or a non-empty list of messages")
    out = []
    for n, msg in enumerate(value, 1):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
            raise _Bad(f"prompt message {n}: expected {{'role', 'content'}}")
        out.append({"role": msg["role"], "content": _text(msg["content"], f"prompt message {n}")})
    _check_roles(out)
    return out


def _check_roles(turns: list[dict[str, str]]) -> None:
    body = turns[1:] if turns[0]["role"] == "system" else turns
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(body))]
    if not body or [t["role"] for t in body] != expected or body[-1]["role"] != "user":
        raise _Bad(
            "prompt: roles must be an optional system, then user / assistant alternating from "
            f"user and ending with user; got {[t['role'] for t in turns]}"
        )


def _medicalgpt_prompt(obj: dict[str, Any]) -> list[dict[str, str]]:
    turns = []
    if obj.get("system"):
        turns.append({"role": "system", "content": _text(obj["system"], "system")})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise _Bad("history: expected a list of [question, answer] pairs")
    for n, pair in enumerate(history, 1):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Bad(f"history item {n}: expected [question, answer]")
        turns.append({"role": "user", "content": _text(pair[0], f"history item {n} question")})
        turns.append({"role": "assistant", "content": _text(pair[1], f"history item {n} answer")})
    turns.append({"role": "user", "content": _text(obj["question"], "question")})
    return turns


def parse_pair(obj: Any, fmt: str) -> tuple[list[dict[str, str]], str, str]:
    """(prompt messages, chosen, rejected) of one record, or _Bad with the rule it breaks."""
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
    fmt = detect_format(obj) if fmt == "auto" else fmt
    required, optional = SCHEMAS[fmt]
    missing = sorted(required - obj.keys())
    extra = sorted(obj.keys() - required - optional - META_KEYS)
    if missing or extra:
        raise _Bad(f"{fmt} schema: missing {missing}, unexpected {extra}")
    if fmt == "trl":
        prompt = _messages(obj["prompt"])
        chosen, rejected = _answer(obj["chosen"], "chosen"), _answer(obj["rejected"], "rejected")
    else:
        prompt = _medicalgpt_prompt(obj)
        chosen = _text(obj["response_chosen"], "response_chosen")
        rejected = _text(obj["response_rejected"], "response_rejected")
    if checks.normalize_text(chosen) == checks.normalize_text(rejected):
        raise _Bad("chosen == rejected: a pair must prefer one answer over a different one")
    return prompt, chosen, rejected


def _redact(texts: list[str]) -> tuple[list[str], int]:
    out = [checks.redact_pii(t)[0] for t in texts]
    return out, sum(a != b for a, b in zip(out, texts, strict=True))


def _pair(obj: dict[str, Any], fmt: str, where: str, lineno: int) -> tuple[PreferencePair, int]:
    prompt, chosen, rejected = parse_pair(obj, fmt)
    texts, redacted = _redact([m["content"] for m in prompt] + [chosen, rejected])
    prompt = tuple({"role": m["role"], "content": t} for m, t in zip(prompt, texts, strict=False))
    pair_id = str(obj.get("id") or f"{Path(where.rsplit(':', 1)[0]).stem}-{lineno}")
    category = obj.get("category")
    return PreferencePair(pair_id, where, prompt, texts[-2], texts[-1], category), redacted


def read_pairs(path: Path, fmt: str, shown: str | None = None) -> PreferenceFile:
    """Every pair of one JSON Lines file, validated and redacted; DataValidationError (with
    file:line of the first few problems) if any record breaks a rule."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataValidationError(f"{shown}: preference file not found") from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            f"{shown}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    result, problems = PreferenceFile(), []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{shown}:{lineno}"
        try:
            pair, redacted = _pair(json.loads(line), fmt, where, lineno)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        except _Bad as exc:
            problems.append(f"{where}: {exc}")
            continue
        result.pairs.append(pair)
        result.redacted += redacted
    if problems:
        more = (
            f" (and {len(problems) - SHOWN_PROBLEMS} more)"
            if len(problems) > SHOWN_PROBLEMS
            else ""
        )
        raise DataValidationError("; ".join(problems[:SHOWN_PROBLEMS]) + more)
    if not result.pairs:
        raise DataValidationError(f"{shown}: no preference pairs")
    return result


def files_md5(paths: list[Path]) -> str:
    """One md5 over the files' bytes, in order: the preference data's lineage."""
    digest = hashlib.md5()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def align_lineage(cfg: Config) -> dict[str, str]:
    """What the align stage did, for register's lineage tags: the method ("sft-only" when
    disabled), beta and the preference data's md5 over its files in order."""
    a = cfg.align
    if not a.enabled:
        return {"align_method": "sft-only"}
    return {
        "align_method": a.method,
        "align_beta": str(a.beta),
        "preference_data_md5": files_md5([cfg.root / s.path for s in a.data]),
        "preference_data": ",".join(s.path for s in a.data),
    }
