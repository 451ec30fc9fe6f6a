"""The HTTP routes: OpenAI's chat completions (plain and streamed), models, health; requests
checked by pipeline.serving.schema, one log line per request, errors as OpenAI's error object."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any

from fastapi import Request  # module level: FastAPI resolves endpoint annotations here

from pipeline.config import Config, ServeConfig
from pipeline.serving import auth
from pipeline.serving.champion import RETRY_FAILED_S, Champion, Served, mlflow_champion
from pipeline.serving.engine import Completion, Generator, prompt_ids
from pipeline.serving.schema import ApiError, ChatRequest, parse_request, send_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # a chat request, not an upload
BODY_TIMEOUT_S = 10.0  # for the whole body to arrive once the headers have
CLOSE = {"Connection": "close"}
LOGGED_ERROR = auth.LOGGED_ERROR  # scope key: the ApiError answered, for the request's log line


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
    """ASGI middleware: one log line per request (method, path, status, latency to last byte,
    and for an error its code and message). An exception that escapes a route is answered with
    a 500 in OpenAI's shape and logged once (with its traceback: that one is a bug here)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception as exc:
            log.exception("serve: %s %s failed", scope["method"], scope["path"])
            scope[LOGGED_ERROR] = ApiError(500, f"Internal error: {exc}", type_="server_error")
            if not status[0]:  # nothing sent yet: the client still gets OpenAI's shape
                await send_error(send_logged, scope[LOGGED_ERROR])
        finally:
            err: ApiError | None = scope.get(LOGGED_ERROR)
            log.info(
                "%s %s %d %.1f ms%s",
                scope["method"], scope["path"], status[0] or 500,
                1000 * (time.perf_counter() - started),
                f" {err.code or err.type}: {err.message}" if err else "",
            )  # fmt: skip


def _shown_type(content_type: str) -> str:
    return repr(content_type[:80]) if content_type else "no Content-Type"


async def read_body(request: Request) -> bytes:
    """The whole body, at most MAX_BODY_BYTES, within BODY_TIMEOUT_S.

    A body shorter than its Content-Length is answered, not waited for: 408 when the client
    stalls, 400 when it closes its side (nobody may be left to read that answer; the log line
    says what happened). Both close the connection: its request was never complete.
    """
    from starlette.requests import ClientDisconnect

    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body over {MAX_BODY_BYTES} bytes.", None, "too_large",
                       headers=CLOSE)  # fmt: skip
    body = bytearray()

    async def read() -> None:
        async for part in request.stream():  # chunked bodies too: stop reading at the limit
            body.extend(part)
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"Request body over {MAX_BODY_BYTES} bytes.", None,
                               "too_large", headers=CLOSE)  # fmt: skip

    expected = f"{size} bytes" if size.isdigit() else "a chunked body"
    try:
        await asyncio.wait_for(read(), BODY_TIMEOUT_S)
    except TimeoutError:
        raise ApiError(
            408,
            f"The request body did not arrive within {BODY_TIMEOUT_S:g} s ({len(body)} bytes "
            f"of {expected}).",
            None,
            "request_timeout",
            headers=CLOSE,
        ) from None
    except ClientDisconnect:
        raise ApiError(
            400,
            f"The client closed the connection after {len(body)} bytes of {expected}.",
            None,
            "incomplete_body",
            headers=CLOSE,
        ) from None
    return bytes(body)


def _unavailable(champion: Champion) -> ApiError:
    """503: nothing loaded yet, with what is happening or what to do."""
    uri = f"models:/{champion.name}@{champion.alias}"
    if champion.loading:
        message = f"{uri} (version {champion.loading}) is loading; retry in a moment."
    elif champion.alias_version is not None and champion.last_error:
        message = (
            f"No model to serve: {uri} (version {champion.alias_version}) could not be loaded "
            f"(last error: {champion.last_error}); it is retried every {RETRY_FAILED_S:.0f} s, "
            "and this server picks up another version when the alias moves."
        )
    else:
        reason = f" (last error: {champion.last_error})" if champion.last_error else ""
        message = (
            f"No model to serve: {uri} is not set{reason}. Run the pipeline or promote a "
            "version (python -m pipeline registry promote VERSION); this server picks it "
            "up by itself."
        )
    return ApiError(503, message, None, "model_not_loaded", "service_unavailable")


async def _chat_completion(
    request: Request, champion: Champion, limits: ServeConfig, generator: Generator
):
    """POST /v1/chat/completions: body checks, the model of the moment, the answer."""
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    body = await read_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415,
            f"Content-Type must be application/json (got {_shown_type(content_type)}).",
            None,
            "unsupported_media_type",
        )
    req = parse_request(body, limits.max_new_tokens)
    served = await run_in_threadpool(champion.for_request)
    if served is None:
        raise _unavailable(champion)
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


def _health(champion: Champion) -> dict[str, Any]:
    """GET /health: what is served and what the watcher last saw (status "ok" when a model is)."""
    served = champion.current  # no check here: the watcher thread keeps looking
    status = "ok" if served else ("loading" if champion.loading else "no_model")
    return {
        "status": status,
        "message": None if served else _unavailable(champion).message,
        "model": champion.name,
        "alias": champion.alias,
        "version": served.version if served else None,
        "alias_version": champion.alias_version,
        "loading": champion.loading,
        "reload_interval_s": champion.interval_s,
        "last_error": champion.last_error,
    }


def _models(champion: Champion) -> dict[str, Any]:
    """GET /v1/models: the served version as an OpenAI model entry (none while none is)."""
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


def create_app(
    champion: Champion,
    limits: ServeConfig,
    generator: Generator | None = None,
    api_key: str | None = None,
):
    """The FastAPI app over a Champion (started by the caller, or not: tests inject one); with
    `api_key`, every route but /health wants `Authorization: Bearer <api_key>` (serving/auth.py)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    generator = generator or Generator()
    app = FastAPI(title="qwen-medical-lora", docs_url=None, redoc_url=None, openapi_url=None)

    def error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
        headers = {**exc.headers, **(headers or {})}
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        request.scope[LOGGED_ERROR] = exc  # for the request's one log line
        return error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        messages = {
            404: f"Invalid URL ({request.method} {request.url.path}).",
            405: f"Method {request.method} is not allowed on {request.url.path}.",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
        request.scope[LOGGED_ERROR] = ApiError(exc.status_code, message, None, code)
        return error(request.scope[LOGGED_ERROR], exc.headers)

    @app.get("/health")
    async def health():
        body = _health(champion)
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/v1/models")
    async def models():
        return _models(champion)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _chat_completion(request, champion, limits, generator)

    if api_key is not None:
        app.add_middleware(auth.RequireKey, key=api_key)  # inside RequestLog: 401s are logged
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


def run(
    cfg: Config,
    host: str = "127.0.0.1",
    port: int = 8000,
    alias: str = "champion",
    api_key: str | None = None,
) -> None:
    """Serve until stopped. `api_key` (else $PIPELINE_API_KEY) is required of every client; a
    non-loopback `host` without one is refused (ConfigError) before the registry is read."""
    import uvicorn

    key = auth.resolve_key(api_key)
    auth.check_host(host, key)
    champion = mlflow_champion(cfg, alias)
    champion.start()  # loads in the background: /health says 503 "loading" until then
    app = create_app(champion, cfg.serve, api_key=key)
    log.info("serve: http://%s:%d/v1 (alias %s, checked every %ss; %s)", host, port, alias,
             cfg.serve.reload_interval_s,
             "API key required" if key else "no API key: loopback only")  # fmt: skip
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        champion.stop()
