"""The API key of `serve`, as vLLM and OpenAI clients expect it.

    PIPELINE_API_KEY=... python -m pipeline serve --host 0.0.0.0
    python -m pipeline serve --api-key ...   # visible in `ps`: prefer the variable

With a key, every request but `GET /health` must carry `Authorization: Bearer <key>` (what
the OpenAI SDK sends for `api_key=`); anything else is a 401 with OpenAI's error object. The
comparison takes the same time whatever the key sent (hmac.compare_digest over SHA-256
digests: neither content nor length leaks). Without a key the server binds to loopback only:
`--host` naming anything else is refused before a model is loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from pipeline.errors import ConfigError
from pipeline.serving.schema import ApiError, send_error

ENV_KEY = "PIPELINE_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # load balancers and orchestrators probe it without a key
LOGGED_ERROR = "serve.error"  # scope key read by app.RequestLog for the request's log line


def resolve_key(cli_key: str | None) -> str | None:
    """The key from --api-key, else from PIPELINE_API_KEY; None when neither is set."""
    key = cli_key if cli_key is not None else os.environ.get(ENV_KEY)
    if key is None:
        return None
    if not key.strip() or key != key.strip():
        where = "--api-key" if cli_key is not None else ENV_KEY
        raise ConfigError(
            f"serve: {where} is empty or has leading/trailing spaces; give the exact key that "
            "clients send as `Authorization: Bearer <key>`"
        )
    return key


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_host(host: str, key: str | None) -> None:
    """Refuse to listen beyond this machine without a key: anyone there could use the model."""
    if key is None and not is_loopback(host):
        raise ConfigError(
            f"serve --host {host}: refusing to answer the network without an API key; set "
            f"{ENV_KEY} (or --api-key) and have clients send `Authorization: Bearer <key>`"
        )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def authorized(header: str | None, key: str) -> bool:
    """Whether an Authorization header carries `Bearer <key>`, compared in constant time."""
    scheme, _, token = (header or "").partition(" ")
    matches = hmac.compare_digest(_digest(token.strip()), _digest(key))
    return scheme.lower() == "bearer" and matches


def _refusal(header: str | None) -> ApiError:
    if not header:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        code = "missing_api_key"
    else:
        message = "Incorrect API key provided."  # never echo what was sent
        code = "invalid_api_key"
    return ApiError(401, message, None, code, headers={"WWW-Authenticate": "Bearer"})


class RequireKey:
    """ASGI middleware: a 401 in OpenAI's shape for a request without the key (not /health)."""

    def __init__(self, app, key: str):
        self.app, self._key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        header = raw.decode("latin-1") if raw is not None else None
        if header is not None and authorized(header, self._key):
            return await self.app(scope, receive, send)
        scope[LOGGED_ERROR] = _refusal(header)
        await send_error(send, scope[LOGGED_ERROR])
