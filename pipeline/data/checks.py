"""Plain-code detectors behind the validation rules that a GX expectation cannot express:
personal data, mojibake, control characters, duplicate keys and a token estimate.

Each detector runs as compiled regular expressions over a pandas Series of message texts. A
cheap combined pattern selects the few suspicious messages first, so 100k conversations cost
one regex pass, not five.

Personal data never reaches a DVC output: `ingest` replaces it with typed placeholders
(`redact_pii`) before writing anything, keeping only a masked description of what it replaced.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.config import PII_RULES  # also the order in which they are replaced

if TYPE_CHECKING:  # pandas and numpy load only where used: `ingest` imports this module
    import pandas as pd

# --- personal data ---------------------------------------------------------------------------

# Chinese resident ID: 17 digits + check digit or X, not inside a longer run of digits.
ID_NUMBER = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# Mainland mobile: 1[3-9] + 9 digits, not part of a longer digit run.
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
# Typed placeholders (Chinese, like the corpus), so the model sees that something was there.
PLACEHOLDERS = {"pii_id_number": "[身份证号]", "pii_mobile": "[手机号]", "pii_email": "[邮箱]"}

# --- encoding damage -------------------------------------------------------------------------

# U+FFFD; '锟斤拷' (UTF-8 replacement bytes read as GBK) and '烫烫'/'屯屯' (uninitialized memory
# read as GBK); a Latin-1 letter followed by a UTF-8 continuation byte read as Latin-1 / cp1252
# ('Ã©', 'â€', 'æ„'); two Latin-1 letters in a row (GBK read as Latin-1: '¸ÐÃ°'). Symbols that
# Chinese text does use ('···' as an ellipsis, '38.5°C', '×', '±') are not mojibake.
_CP1252 = "\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122"
MOJIBAKE = re.compile(
    rf"\ufffd|锟斤拷|烫烫烫|屯屯屯|[\u00c0-\u00ff][\u0080-\u00bf{_CP1252}]|[\u00c0-\u00ff]{{2,}}"
)
# C0 and C1 control characters except tab, newline and carriage return.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
SUSPICIOUS = re.compile(
    r"[0-9]{11}|@|\ufffd|锟|烫|屯|[\u00a0-\u00ff\u20ac\u2122]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)


def id_checksum_ok(number: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character resident ID."""
    total = sum(int(d) * w for d, w in zip(number[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == number[17].upper()


def _ids(text: str) -> list[str]:
    return [m for m in ID_NUMBER.findall(text) if id_checksum_ok(m)]


def _mask(value: str, keep_start: int, keep_end: int) -> str:
    hidden = max(len(value) - keep_start - keep_end, 0)
    return value[:keep_start] + "*" * hidden + value[len(value) - keep_end :]


def _mask_email(value: str) -> str:
    user, _, domain = value.partition("@")
    return f"{user[:1]}***@{domain}"


def _first_id(text: str) -> str | None:
    found = _ids(text)
    return f"resident ID number {_mask(found[0], 6, 4)}" if found else None


def _first(pattern: re.Pattern, what: str, mask: Callable[[str], str]) -> Callable:
    def find(text: str) -> str | None:
        m = pattern.search(text)
        return f"{what} {mask(m.group())}" if m else None

    return find


def _mojibake(text: str) -> str | None:
    m = MOJIBAKE.search(text)
    return f"mojibake {m.group()[:12]!r} (text decoded with the wrong encoding)" if m else None


def _control(text: str) -> str | None:
    m = CONTROL.search(text)
    return f"control character U+{ord(m.group()):04X} at character {m.start() + 1}" if m else None


# rule -> finder returning a readable, masked description of the first hit (or None)
DETECTORS: dict[str, Callable[[str], str | None]] = {
    "mojibake": _mojibake,
    "control_chars": _control,
    "pii_id_number": _first_id,
    "pii_mobile": _first(MOBILE, "mobile number", lambda v: _mask(v, 3, 4)),
    "pii_email": _first(EMAIL, "e-mail address", _mask_email),
}


PII_SUSPICIOUS = re.compile(r"[0-9]{11}|@")  # a text without this holds none of them


def redact_pii(text: str) -> tuple[str, dict[str, str]]:
    """`text` with every resident ID (valid check digit), mainland mobile number and e-mail
    address replaced by its placeholder, and rule -> masked description of the first hit."""
    if not PII_SUSPICIOUS.search(text):
        return text, {}
    found = {}
    for rule in PII_RULES:
        described = DETECTORS[rule](text)
        if described:
            found[rule] = described
            text = redact(text, rule)
    return text, found


def detect(texts: pd.Series) -> dict[str, pd.Series]:
    """rule -> Series aligned with `texts`: a masked description of the first hit, or None."""
    import numpy as np
    import pandas as pd

    hit = texts.str.contains(SUSPICIOUS, regex=True).to_numpy(dtype=bool)
    positions = np.flatnonzero(hit)
    suspicious = [texts.iat[i] for i in positions]
    found = {}
    for rule, finder in DETECTORS.items():
        column = np.full(len(texts), None, dtype=object)
        column[positions] = [finder(text) for text in suspicious]
        found[rule] = pd.Series(column, index=texts.index, dtype=object)
    return found


def redact(text: str, rule: str) -> str:
    """`text` with every hit of a personal-data rule replaced by its typed placeholder."""
    placeholder = PLACEHOLDERS[rule]
    if rule == "pii_mobile":
        return MOBILE.sub(placeholder, text)
    if rule == "pii_email":
        return EMAIL.sub(placeholder, text)
    return ID_NUMBER.sub(lambda m: placeholder if id_checksum_ok(m.group()) else m.group(), text)


# --- duplicates and leakage ------------------------------------------------------------------

_NOT_WORD = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, without punctuation, symbols or whitespace: '感冒， 怎么办?' and
    '感冒怎么办？' are the same question."""
    # Punctuation goes first: what is left (CJK, letters, digits) is nearly always NFKC already,
    # which unicodedata confirms quickly; NFKC over raw text costs ~10x more at 100k rows.
    text = _NOT_WORD.sub("", text)
    if not unicodedata.is_normalized("NFKC", text):
        text = _NOT_WORD.sub("", unicodedata.normalize("NFKC", text))
    return text.casefold()


# --- length ----------------------------------------------------------------------------------

# ChatML scaffolding per message (<|im_start|>, role, newline, <|im_end|>, newline) and the
# default system prompt the Qwen2.5 template adds when a conversation has none (measured on the
# embedded tokenizer: 30 to 34 tokens of overhead for a two-message conversation).
TOKENS_PER_MESSAGE = 5
DEFAULT_SYSTEM_TOKENS = 20


def estimate_tokens(chars, messages, has_system, chars_per_token: float):
    """Tokens of a conversation (scalars or numpy arrays): ceil(characters / chars_per_token)
    + scaffolding per message + the default system prompt when there is none."""
    import numpy as np

    body = np.ceil(np.asarray(chars) / chars_per_token).astype(np.int64)
    system = np.where(has_system, 0, DEFAULT_SYSTEM_TOKENS)
    return body + TOKENS_PER_MESSAGE * np.asarray(messages) + system
