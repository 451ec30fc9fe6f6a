"""Whether `model.base` can be loaded on this machine, checked when params load.

A folder must exist and hold config.json. A hub id must be in the local Hugging Face cache or
downloadable: with HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set and no cached copy it fails at
once; otherwise, and only for a hub id missing from the cache, the hub is probed for about a
second. Without this, a wrong base failed seconds to minutes later (preprocess, or 89 s of
download retries) with a message that named neither `model.base` nor the folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError

# A hub id: `name` or `org/name` (letters, digits, `-`, `_`, `.`); anything else is a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_TRUE = ("1", "ON", "YES", "TRUE")
PROBE_SECONDS = 1.0  # how long config load waits for the hub before calling it unreachable


def check_model_base(base: str, revision: str, root: Path) -> None:
    """Fail at once, naming `model.base`, when the base cannot be loaded here: a path that does
    not exist (or is no model folder), or a hub id that is neither in the local Hugging Face
    cache nor downloadable (HF_HUB_OFFLINE set, or the hub unreachable within ~1 s). The
    network is probed only for a hub id missing from the cache, and never when offline."""
    given = Path(base).expanduser()
    places = [given] if given.is_absolute() else [root / given, Path.cwd() / given]
    folder = next((p for p in places if p.exists()), None)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"model.base {base!r}: {folder} holds no config.json; expected a Hugging Face "
                "model folder"
            )
        return
    if not _HUB_ID.match(base) or ".." in base or "--" in base:
        raise ConfigError(
            f"model.base {base!r}: no such directory ({places[0]}); expected tiny-qwen, "
            "an existing model folder or a hub id such as Qwen/Qwen2.5-7B-Instruct"
        )
    _check_hub_id(base, revision, places[0])


def _hub_cache() -> str:
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]
    cache = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = env.get("HF_HOME") or os.path.join(cache, "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _check_hub_id(repo_id: str, revision: str, folder: Path) -> None:
    from huggingface_hub import try_to_load_from_cache

    cache = _hub_cache()
    if isinstance(try_to_load_from_cache(repo_id, "config.json", cache, revision), str):
        return
    where = (
        f"model.base {repo_id!r}: no folder {folder}, and as a hub id (revision {revision!r}) "
        f"it is not in the local cache {cache}"
    )
    offline = [k for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_true(k)]
    if offline:
        raise ConfigError(
            f"{where} and {offline[0]}=1 forbids downloading it; download it where there is "
            f"network (`hf download {repo_id}`), or point model.base at a local folder"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not _reachable(endpoint, PROBE_SECONDS):
        raise ConfigError(
            f"{where} and {endpoint} cannot be reached (no answer within {PROBE_SECONDS:g} s); "
            "download it first, or point model.base at a local folder"
        )


def _env_true(key: str) -> bool:
    return os.environ.get(key, "").strip().upper() in _TRUE


def _reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` (name lookup included:
    it runs in a thread, so a hanging resolver cannot stall config load)."""
    parsed = urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    opened = threading.Event()

    def connect() -> None:
        with contextlib.suppress(OSError):
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            opened.set()

    threading.Thread(target=connect, daemon=True).start()
    return opened.wait(timeout)
