"""Serve the registry's champion behind an OpenAI-compatible HTTP API.

    python -m pipeline serve [--host 127.0.0.1] [--port 8000] [--alias champion]

- `POST /v1/chat/completions`: an OpenAI chat request in, an OpenAI `chat.completion` (or, with
  `"stream": true`, server-sent `chat.completion.chunk`s ending with `data: [DONE]`) out;
- `GET /v1/models`: the model being served, `GET /health`: status, name, version, alias.

The model is the registered pyfunc (`models:/<register.model_name>/<version>`), loaded the
same way `chat` loads it, and answers the same: the chat template of the base, the configured
system prompt unless the request brings its own, greedy decoding unless a temperature > 0 is
asked for, a stop at <|im_end|>.

A background thread checks which version holds the alias every `serve.reload_interval_s`
seconds (0: also on every request, which then waits for the check) and loads a new one while
the old one goes on answering; the swap is one assignment, and a request is answered to the
end by the model it started with. A version that fails to load is logged and the old one keeps
serving (the failed one is retried after a minute). Until there is a champion, /health and
completions answer 503 and the thread keeps looking. Generation is serialized by a lock: one
model, one request at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request  # module level: FastAPI resolves endpoint annotations here

from pipeline.config import Config, ServeConfig
from pipeline.modeling import ModelSpec, chat_messages

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # a chat request, not an upload
RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long
# Fast (Rust) tokenizers may refuse concurrent use ("Already borrowed"): one user at a time.
TOKENIZER_LOCK = threading.Lock()
ROLES = ("system", "developer", "user", "assistant")
# Accepted as OpenAI clients send them, with no effect on the answer.
IGNORED_FIELDS = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")
# Accepted only at their neutral value (a feature this server does not have).
NEUTRAL_FIELDS = {
    "stop": (None, [], ""),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "response_format": (None, {"type": "text"}),
}
KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "stream",
    "stream_options",
    *IGNORED_FIELDS,
    *NEUTRAL_FIELDS,
}


class ApiError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type_,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# ------------------------------------------------------------------------------------------
# Requests: parsed and checked without a model


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]  # roles system / user / assistant, string contents
    max_tokens: int
    temperature: float  # 0: greedy
    top_p: float
    seed: int | None
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _content(value: Any, where: str) -> str:
    """A string, or a list of text parts ({"type": "text", "text": ...}) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in value
    ):
        return "".join(p["text"] for p in value)
    raise ApiError(
        400,
        f"{where}.content must be a string (or a list of text parts); got "
        f"{type(value).__name__}. Images, audio and tool calls are not supported.",
        f"{where}.content",
        "invalid_type",
    )


def _messages(value: Any) -> list[dict[str, str]]:
    if value is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", "messages", "missing")
    if not isinstance(value, list) or not value:
        raise ApiError(
            400, "'messages' must be a non-empty list of messages.", "messages", "invalid_value"
        )
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"{where} must be an object.", where, "invalid_type")
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise ApiError(
                400, f"{where}: unsupported fields {sorted(extra)}.", where, "invalid_value"
            )
        role = m.get("role")
        if role not in ROLES:
            raise ApiError(
                400,
                f"{where}.role must be one of 'system', 'user', 'assistant' (got {role!r}).",
                f"{where}.role",
                "invalid_value",
            )
        if role in ("system", "developer") and i > 0:
            raise ApiError(
                400,
                f"{where}: a system message is allowed only as the first message.",
                f"{where}.role",
                "invalid_value",
            )
        if "content" not in m:
            raise ApiError(400, f"{where}.content is missing.", f"{where}.content", "missing")
        role = "system" if role == "developer" else role
        out.append({"role": role, "content": _content(m["content"], where)})
    if out[-1]["role"] != "user":
        last = f"messages[{len(out) - 1}]"
        raise ApiError(
            400,
            f"The last message must come from the user (got {out[-1]['role']!r}).",
            f"{last}.role",
            "invalid_value",
        )
    return out


def parse_request(body: bytes, max_new_tokens: int) -> ChatRequest:
    """Check an OpenAI chat request; ApiError (4xx) names the offending parameter."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400, f"The request body is not valid JSON: {exc}.", None, "invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", None, "invalid_json")
    for key in data:
        if key not in KNOWN_FIELDS:
            raise ApiError(400, f"Unrecognized request argument supplied: {key}", key)
    for key, neutral in NEUTRAL_FIELDS.items():
        if key in data and data[key] not in neutral:
            raise ApiError(
                400,
                f"'{key}' is not supported by this server (only {neutral[1]!r} or null).",
                key,
                "unsupported_parameter",
            )
    if data.get("model") is not None and not isinstance(data["model"], str):
        raise ApiError(400, "'model' must be a string.", "model", "invalid_type")
    messages = _messages(data.get("messages"))

    n = data.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError(400, f"Only n=1 is supported (got {n!r}).", "n", "unsupported_value")

    caps = {k: data[k] for k in ("max_tokens", "max_completion_tokens") if data.get(k) is not None}
    if len(set(map(repr, caps.values()))) > 1:
        raise ApiError(400, "max_tokens and max_completion_tokens differ; send one.", "max_tokens")
    max_tokens = max_new_tokens
    for key, value in caps.items():
        if not _is_int(value) or value <= 0:
            raise ApiError(
                400, f"'{key}' must be a positive integer (got {value!r}).", key, "invalid_value"
            )
        if value > max_new_tokens:
            raise ApiError(
                400,
                f"'{key}' is {value}, above this server's limit of {max_new_tokens} new tokens.",
                key,
                "invalid_value",
            )
        max_tokens = value

    temperature = data.get("temperature")
    temperature = 0.0 if temperature is None else temperature
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise ApiError(
            400, f"'temperature' must be a number from 0 to 2 (got {temperature!r}).",
            "temperature", "invalid_value",
        )  # fmt: skip
    top_p = data.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise ApiError(
            400, f"'top_p' must be a number in (0, 1] (got {top_p!r}).", "top_p", "invalid_value"
        )
    seed = data.get("seed")
    if seed is not None and not _is_int(seed):
        raise ApiError(400, f"'seed' must be an integer (got {seed!r}).", "seed", "invalid_type")

    stream = data.get("stream")
    stream = False if stream is None else stream
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be a boolean.", "stream", "invalid_type")
    options = data.get("stream_options")
    if options is not None and (not stream or not isinstance(options, dict)):
        raise ApiError(
            400,
            "'stream_options' is allowed only with stream=true, as an object.",
            "stream_options",
            "invalid_value",
        )
    include_usage = bool((options or {}).get("include_usage", False))
    return ChatRequest(
        messages, max_tokens, float(temperature), float(top_p), seed, stream, include_usage
    )


# ------------------------------------------------------------------------------------------
# The served model and its reloads


@dataclass(frozen=True)
class Served:
    """One loaded registry version; replaced as a whole when the alias moves."""

    name: str
    version: str
    alias: str
    model: Any
    tokenizer: Any
    spec: ModelSpec
    loaded_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return f"{self.name}:v{self.version}"


Loader = Callable[[str], tuple[Any, Any, ModelSpec]]  # version -> model, tokenizer, spec


class Champion:
    """Follows a registry alias: `current` is the loaded version, swapped when the alias moves.

    `resolve()` returns the version the alias points to (None: no such alias or model);
    `load(version)` returns model, tokenizer and spec. Both are injected, so this logic is
    tested without MLflow or a model.
    """

    def __init__(
        self,
        name: str,
        alias: str,
        interval_s: float,
        resolve: Callable[[], str | None],
        load: Loader,
    ):
        self.name, self.alias, self.interval_s = name, alias, interval_s
        self._resolve, self._load = resolve, load
        self.current: Served | None = None
        self.alias_version: str | None = None  # what the alias pointed to at the last check
        self.last_error: str | None = None
        self.loading: str | None = None  # the version being loaded now
        self._failed: dict[str, float] = {}  # version -> monotonic time of its failed load
        self._lock = threading.Lock()  # one check / load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Served | None:
        """Check the alias; load and swap in its version if it moved. Never raises."""
        with self._lock:
            try:
                version = self._resolve()
            except Exception as exc:  # the registry is down: keep serving what we have
                error = f"cannot read alias {self.alias!r}: {exc}"
                if error != self.last_error:  # once, not at every check
                    log.error("serve: %s", error)
                self.last_error = error
                return self.current
            previous, self.alias_version = self.alias_version, version
            if version is None:
                if self.current is not None and previous is not None:
                    log.warning(
                        "serve: %s has no alias %r now; still serving version %s",
                        self.name, self.alias, self.current.version,
                    )  # fmt: skip
                return self.current
            if self.current is not None and self.current.version == version:
                self.last_error = None
                return self.current
            failed_at = self._failed.get(version)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_S:
                return self.current
            old = self.current.version if self.current else None
            log.info(
                "serve: loading %s version %s (%s; was %s)", self.name, version, self.alias, old
            )
            started, self.loading = time.monotonic(), version
            try:
                model, tokenizer, spec = self._load(version)
            except Exception as exc:
                self._failed[version] = time.monotonic()
                self.last_error = f"version {version} failed to load: {exc}"
                log.exception(
                    "serve: %s version %s failed to load; %s", self.name, version,
                    f"still serving version {old}" if old else "nothing to serve yet",
                )  # fmt: skip
                return self.current
            finally:
                self.loading = None
            self._failed.pop(version, None)
            self.last_error = None
            self.current = Served(self.name, version, self.alias, model, tokenizer, spec)
            log.info(
                "serve: now serving %s version %s (loaded in %.1f s)",
                self.name, version, time.monotonic() - started,
            )  # fmt: skip
            return self.current

    def for_request(self) -> Served | None:
        """The model a request uses: checked first when reload_interval_s is 0."""
        if self.interval_s == 0:
            return self.refresh()
        return self.current

    def start(self) -> None:
        """Load the alias's version and keep checking, in a daemon thread (returns at once)."""
        self._thread = threading.Thread(target=self._watch, name="champion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        period = self.interval_s or 1.0
        self.refresh()
        while not self._stop.wait(period):
            self.refresh()


def mlflow_champion(cfg: Config, alias: str) -> Champion:
    """A Champion over the configured MLflow registry, loading versions as `chat` does."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    tracking.setup(cfg)
    name = cfg.register_.model_name
    client = mlflow.MlflowClient()

    def resolve() -> str | None:
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def load(version: str) -> tuple[Any, Any, ModelSpec]:
        chat_model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
        return chat_model.model, chat_model.tokenizer, chat_model.spec

    return Champion(name, alias, cfg.serve.reload_interval_s, resolve, load)


# ------------------------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop": an end token came; "length": max_tokens cut the answer
    prompt_tokens: int
    completion_tokens: int  # generated tokens, the end token included


def prompt_ids(served: Served, messages: list[dict[str, str]]) -> list[int]:
    """The prompt exactly as pipeline.generation renders it: chat template + system prompt."""
    tok = served.tokenizer
    text = tok.apply_chat_template(
        chat_messages(served.spec, messages), tokenize=False, add_generation_prompt=True
    )
    with TOKENIZER_LOCK:
        return tok(text, add_special_tokens=False)["input_ids"]


class _Deltas:
    """A `generate` streamer: new token ids in, text pieces out (on_delta), as they become
    final: whitespace at either end held back (the answer is stripped), and no half of a
    multi-byte character."""

    def __init__(self, tok, stops: list[int], on_delta: Callable[[str], None] | None):
        self.tok, self.stops, self.on_delta = tok, set(stops), on_delta
        self.ids: list[int] = []
        self.sent = ""
        self._prompt_seen = False
        self._stopped = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() hands over the prompt first
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self._stopped:
                return
            if token in self.stops:
                self._stopped = True
                return
            self.ids.append(token)
        if self.on_delta is None:
            return
        with TOKENIZER_LOCK:
            text = self.tok.decode(self.ids, skip_special_tokens=True).strip()
        if text.endswith("\ufffd"):
            return
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_delta(text[len(self.sent) :])
            self.sent = text

    def end(self) -> None:
        pass


class Generator:
    """One generation at a time (a lock): the model is not shared between requests."""

    def __init__(self):
        self.lock = threading.Lock()

    def complete(
        self,
        served: Served,
        req: ChatRequest,
        ids: list[int],
        on_delta: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from pipeline.generation import stop_ids

        class Cancelled(StoppingCriteria):  # the client went away
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        tok, model = served.tokenizer, served.model
        stops = stop_ids(tok)
        streamer = _Deltas(tok, stops, on_delta)
        sampling: dict[str, Any] = {"do_sample": False}
        if req.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": req.temperature,
                "top_p": req.top_p,
                "top_k": 0,  # OpenAI has no top-k
            }
        device = next(model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        with self.lock, torch.no_grad():
            if req.seed is not None and req.temperature > 0:
                torch.manual_seed(req.seed)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=req.max_tokens,
                eos_token_id=stops,
                pad_token_id=tok.pad_token_id,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Cancelled()] if cancel else []),
                **sampling,
            )
        row = out[0, len(ids) :].tolist()
        cut = next((j for j, t in enumerate(row) if t in stops), None)
        body = row if cut is None else row[:cut]
        with TOKENIZER_LOCK:
            text = tok.decode(body, skip_special_tokens=True).strip()  # as generation.generate
        if on_delta is not None and text != streamer.sent:
            if text.startswith(streamer.sent):
                on_delta(text[len(streamer.sent) :])
            else:  # decoding a prefix gave other characters: the stream cannot be mended
                log.warning("serve: streamed text %r is not a prefix of %r", streamer.sent, text)
        return Completion(
            text,
            "stop" if cut is not None else "length",
            len(ids),
            len(body) + (cut is not None),
        )


# ------------------------------------------------------------------------------------------
# HTTP


def _usage(c: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    }


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


class RequestLog:
    """ASGI middleware: one log line per request (method, path, status, latency to last byte)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log.info(
                "%s %s %d %.1f ms",
                scope["method"], scope["path"], status[0], 1000 * (time.perf_counter() - started),
            )  # fmt: skip


def create_app(champion: Champion, limits: ServeConfig, generator: Generator | None = None):
    """The FastAPI app over a Champion (started by the caller, or not: tests inject one)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    generator = generator or Generator()
    app = FastAPI(title="qwen-medical-lora", docs_url=None, redoc_url=None, openapi_url=None)

    def error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
        if exc.status == 503:
            headers = {**(headers or {}), "Retry-After": "5"}
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        messages = {
            404: f"Invalid URL ({request.method} {request.url.path}).",
            405: f"Method {request.method} is not allowed on {request.url.path}.",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
        return error(ApiError(exc.status_code, message, None, code), exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("serve: %s %s failed", request.method, request.url.path)
        return error(ApiError(500, f"Internal error: {exc}", None, None, "server_error"))

    uri = f"models:/{champion.name}@{champion.alias}"

    def unavailable() -> ApiError:
        if champion.loading:
            message = f"{uri} (version {champion.loading}) is loading; retry in a moment."
        else:
            reason = f" (last error: {champion.last_error})" if champion.last_error else ""
            message = (
                f"No model to serve: {uri} is not set{reason}. Run the pipeline or promote a "
                "version (python -m pipeline registry promote VERSION); this server picks it "
                "up by itself."
            )
        return ApiError(503, message, None, "model_not_loaded", "service_unavailable")

    @app.get("/health")
    async def health():
        served = champion.current  # no check here: the watcher thread keeps looking
        status = "ok" if served else ("loading" if champion.loading else "no_model")
        body = {
            "status": status,
            "message": None if served else unavailable().message,
            "model": champion.name,
            "alias": champion.alias,
            "version": served.version if served else None,
            "alias_version": champion.alias_version,
            "loading": champion.loading,
            "reload_interval_s": champion.interval_s,
            "last_error": champion.last_error,
        }
        return JSONResponse(body, status_code=200 if served else 503)

    @app.get("/v1/models")
    async def models():
        served = champion.current
        data = []
        if served:
            data.append(
                {
                    "id": served.id,
                    "object": "model",
                    "created": int(served.loaded_at),
                    "owned_by": "mlflow-registry",
                    "name": served.name,
                    "version": served.version,
                    "alias": served.alias,
                }
            )
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        too_large = ApiError(413, f"Request body over {MAX_BODY_BYTES} bytes.", None, "too_large")
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > MAX_BODY_BYTES:
            raise too_large
        body = bytearray()
        async for part in request.stream():  # chunked bodies too: stop reading at the limit
            body += part
            if len(body) > MAX_BODY_BYTES:
                raise too_large
        req = parse_request(bytes(body), limits.max_new_tokens)
        served = await run_in_threadpool(champion.for_request)
        if served is None:
            raise unavailable()
        ids = await run_in_threadpool(prompt_ids, served, req.messages)
        if len(ids) > limits.max_prompt_tokens:
            raise ApiError(
                400,
                f"This server's maximum prompt length is {limits.max_prompt_tokens} tokens; "
                f"your messages resulted in {len(ids)} tokens (chat template included). "
                "Shorten the conversation.",
                "messages",
                "context_length_exceeded",
            )
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def head(kind: str) -> dict[str, Any]:
            return {"id": cid, "object": kind, "created": created, "model": served.id}

        if not req.stream:
            c = await run_in_threadpool(generator.complete, served, req, ids)
            return {
                **head("chat.completion"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": c.text},
                        "finish_reason": c.finish_reason,
                    }
                ],
                "usage": _usage(c),
            }
        return StreamingResponse(
            _stream(generator, served, req, ids, head("chat.completion.chunk")),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    app.add_middleware(RequestLog)
    return app


async def _stream(generator: Generator, served: Served, req: ChatRequest, ids, head):
    """SSE: role chunk, content chunks, a finish chunk, (usage chunk), [DONE]."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def push(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (shutdown)
            cancel.set()

    def work() -> None:
        try:
            result = generator.complete(served, req, ids, lambda d: push("delta", d), cancel)
            push("done", result)
        except Exception as exc:  # reported in the stream: the status line is already sent
            log.exception("serve: streaming generation failed")
            push("error", exc)

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**head, "choices": [choice]})

    threading.Thread(target=work, name="generate-stream", daemon=True).start()
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await queue.get()
            if kind == "delta":
                yield chunk({"content": value})
            elif kind == "error":
                yield _sse(
                    ApiError(500, f"Generation failed: {value}", type_="server_error").body()
                )
                break
            else:
                yield chunk({}, value.finish_reason)
                if req.include_usage:
                    yield _sse({**head, "choices": [], "usage": _usage(value)})
                break
        yield _sse("[DONE]")
    finally:
        cancel.set()  # the client went away (or we are done): stop generating


def run(cfg: Config, host: str = "127.0.0.1", port: int = 8000, alias: str = "champion") -> None:
    import uvicorn

    champion = mlflow_champion(cfg, alias)
    champion.start()  # loads in the background: /health says 503 "loading" until then
    app = create_app(champion, cfg.serve)
    log.info("serve: http://%s:%d/v1 (alias %s, checked every %ss)", host, port, alias,
             cfg.serve.reload_interval_s)  # fmt: skip
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        champion.stop()
