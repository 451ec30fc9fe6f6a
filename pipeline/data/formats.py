"""Record formats: one parsed record (a dict from a JSON array, a JSON Lines line) turned into
the project's role/content turns. Used by pipeline/data/sources.py, which owns the bytes, encodings
and files; nothing here reads a file.

Formats (per source, `format`): the project's own (`conversations` of {role, content}); ShareGPT
(`conversations` of {from, value}, from in system / human / gpt, an unknown `from` kept as is for
validate's known_roles rule); OpenAI (`messages`); a singular `conversation` key of
{role, content}; Alpaca (`instruction`, optional `input`, `output`, optional `history` as
[[question, answer], ...] and `system`). `auto` picks a format per record by its keys. Each
format has required and allowed top-level keys (`KEYS`); anything else is a `schema` problem.

A record that cannot become turns raises `Problem` with its rule (malformed_json, schema,
content_type) and reason; the caller quarantines it, never drops it.
"""

from __future__ import annotations

from typing import Any

SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}
# Top-level keys each JSON format requires and allows (anything else is a `schema` problem).
KEYS: dict[str, tuple[set[str], set[str]]] = {
    "project": ({"conversations"}, {"id"}),
    "sharegpt": ({"conversations"}, {"id", "system"}),
    "openai": ({"messages"}, {"id"}),
    "conversation": ({"conversation"}, {"id"}),
    "alpaca": ({"instruction", "output"}, {"input", "history", "system", "id"}),
}


class Problem(Exception):
    """A record that is not a conversation: rule (malformed_json, schema, content_type) + why."""

    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def _keys(obj: Any, fmt: str) -> None:
    if not isinstance(obj, dict):
        raise Problem("schema", f"a record is {type(obj).__name__}, expected a JSON object")
    required, optional = KEYS[fmt]
    missing = sorted(required - set(obj))
    extra = sorted(set(obj) - required - optional)
    allowed = ", ".join(sorted(required)) + (
        f" (optional: {', '.join(sorted(optional))})" if optional else ""
    )
    if missing:
        raise Problem("schema", f"missing key {missing[0]!r} ({fmt} format: {allowed})")
    if extra:
        raise Problem("schema", f"unexpected key {extra[0]!r} ({fmt} format: {allowed})")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Problem("content_type", f"{what} is {type(value).__name__}, expected a string")
    return value


def _messages(turns: Any, key: str, role_key: str, text_key: str) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        got = "an empty list" if turns == [] else type(turns).__name__
        raise Problem("schema", f"{key!r} is {got}, expected a non-empty list of messages")
    out = []
    for n, msg in enumerate(turns, 1):
        if not isinstance(msg, dict):
            raise Problem("schema", f"message {n} is {type(msg).__name__}, expected an object")
        if set(msg) != {role_key, text_key}:
            raise Problem(
                "schema",
                f"message {n} has keys {sorted(msg)}, expected exactly "
                f"{sorted([role_key, text_key])}",
            )
        role = msg[role_key]
        if not isinstance(role, str):
            raise Problem("schema", f"message {n}: {role_key} is {type(role).__name__}")
        out.append({"role": role, "content": _string(msg[text_key], f"message {n}: {text_key}")})
    return out


def _sharegpt(obj: dict) -> list[dict[str, str]]:
    turns = _messages(obj["conversations"], "conversations", "from", "value")
    # An unknown `from` is kept as is: validate's known_roles rule names it.
    turns = [
        {"role": SHAREGPT_ROLES.get(t["role"], t["role"]), "content": t["content"]} for t in turns
    ]
    if "system" in obj:
        turns.insert(0, {"role": "system", "content": _string(obj["system"], "system")})
    return turns


def _alpaca(obj: dict) -> list[dict[str, str]]:
    turns = []
    if "system" in obj:
        turns.append({"role": "system", "content": _string(obj["system"], "system")})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise Problem("schema", f"history is {type(history).__name__}, expected [[q, a], ...]")
    for n, pair in enumerate(history, 1):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise Problem("schema", f"history entry {n} is not a [question, answer] pair")
        turns.append({"role": "user", "content": _string(pair[0], f"history {n} question")})
        turns.append({"role": "assistant", "content": _string(pair[1], f"history {n} answer")})
    question = _string(obj["instruction"], "instruction")
    extra = _string(obj.get("input", ""), "input")
    if extra.strip():
        question = f"{question}\n{extra}"
    turns.append({"role": "user", "content": question})
    turns.append({"role": "assistant", "content": _string(obj["output"], "output")})
    return turns


def _detect(obj: Any) -> str:
    if not isinstance(obj, dict):
        raise Problem("schema", f"a record is {type(obj).__name__}, expected a JSON object")
    for key, fmt in (("messages", "openai"), ("conversation", "conversation")):
        if key in obj:
            return fmt
    if "instruction" in obj:
        return "alpaca"
    if "conversations" in obj:
        turns = obj["conversations"]
        first = turns[0] if isinstance(turns, list) and turns else None
        return "sharegpt" if isinstance(first, dict) and "from" in first else "project"
    raise Problem(
        "schema",
        "no conversation found: expected a key conversations, messages, conversation or "
        "instruction",
    )


def normalize(obj: Any, fmt: str) -> tuple[list[dict[str, str]], str | None]:
    """(role/content turns, the record's own id) of one parsed JSON record; raises Problem."""
    if fmt == "auto":
        fmt = _detect(obj)
    _keys(obj, fmt)
    if fmt == "sharegpt":
        turns = _sharegpt(obj)
    elif fmt == "alpaca":
        turns = _alpaca(obj)
    else:
        key = {"project": "conversations", "openai": "messages", "conversation": "conversation"}
        turns = _messages(obj[key[fmt]], key[fmt], "role", "content")
    record_id = obj.get("id")
    return turns, None if record_id is None else str(record_id)
