"""The OpenAI chat request as pydantic models (strict types), and the one mapper from a
validation error to OpenAI's error object.

Strict: `false` is not the number 0 and `0` is not the boolean false. JSON is parsed by
pydantic's own parser (jiter), which refuses lone surrogates ("\\ud800") and nesting deeper
than about 200 levels; numbers out of range (a seed over 64 bits) fail their field's bounds,
NaN and infinities are refused. Why not FastAPI's own body parsing: the body is read by hand
first (size cap, timeout, Content-Type), and every error goes through `api_error`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

INT64 = 2**63  # seeds are 64-bit integers (torch.manual_seed takes no more)


class ApiError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type_,
        )
        self.headers = dict(headers or {})
        if status == 503:
            self.headers.setdefault("Retry-After", "5")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


async def send_error(send, exc: ApiError) -> None:
    """Answer an ASGI request with `exc` in OpenAI's shape (for middleware, outside FastAPI)."""
    body = json.dumps(exc.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class ChatRequest:
    """A checked request, as the generation engine uses it."""

    messages: list[dict[str, str]]  # roles system / user / assistant, string contents
    max_tokens: int
    temperature: float  # 0: greedy
    top_p: float
    seed: int | None
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage


def _custom(code: str, message: str, param: str | None = None) -> PydanticCustomError:
    """A validation error with our own code and message; `param` overrides its location."""
    return PydanticCustomError(code, message, {"param": param} if param else None)


def _text(value: Any) -> Any:
    """Message content: a string, or a list of text parts ({"type": "text", "text": ...})
    joined. Anything else is left to the strict `str` check with our own message."""
    if isinstance(value, list):
        if all(
            isinstance(p, dict)
            and set(p) == {"type", "text"}
            and p["type"] == "text"
            and isinstance(p["text"], str)
            for p in value
        ):
            return "".join(p["text"] for p in value)
    if not isinstance(value, str):
        raise _custom(
            "invalid_type",
            "must be a string (or a list of text parts); images, audio and tool calls are not "
            "supported",
        )
    return value


Text = Annotated[str, BeforeValidator(_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


def _neutral(name: str, allowed: tuple[Any, ...]):
    """A field this server accepts only at its neutral value (a feature it does not have).
    Compared with the type too: `false` is not the neutral 0."""

    def check(value: Any) -> Any:
        if value is not None and not any(type(value) is type(a) and value == a for a in allowed):
            shown = " or ".join(json.dumps(a) for a in allowed)
            raise _custom(
                "unsupported_parameter",
                f"is not supported by this server (only {shown} or null)",
            )
        return value

    return field_validator(name)(check)


class ChatCompletionRequest(_Strict):
    """POST /v1/chat/completions, as far as this server supports it."""

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = None
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Typed, accepted only at their neutral value.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Any JSON, accepted only at its neutral value.
    stop: Any = None
    logit_bias: Any = None
    tools: Any = None
    tool_choice: Any = None
    response_format: Any = None
    # Accepted as OpenAI clients send them, with no effect on the answer.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None

    # Numbers arrive here as floats: the neutral penalty is 0.0 whether 0 or 0.0 was sent.
    _penalties = _neutral("presence_penalty", (0.0,))
    _frequency = _neutral("frequency_penalty", (0.0,))
    _logprobs = _neutral("logprobs", (False,))
    _top_logprobs = _neutral("top_logprobs", (0,))
    _stop = _neutral("stop", ([], ""))
    _logit_bias = _neutral("logit_bias", ({},))
    _tools = _neutral("tools", ([],))
    _tool_choice = _neutral("tool_choice", ("none",))
    _response_format = _neutral("response_format", ({"type": "text"},))

    @field_validator("n")
    @classmethod
    def _one_answer(cls, n: int | None) -> int | None:
        if n is not None and n != 1:
            raise _custom("unsupported_value", f"must be 1: only n=1 is supported (got {n})")
        return n

    @field_validator("max_tokens", "max_completion_tokens")
    @classmethod
    def _under_the_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        cap = (info.context or {}).get("max_new_tokens")
        if value is not None and cap is not None and value > cap:
            raise _custom(
                "invalid_value", f"is {value}, above this server's limit of {cap} new tokens"
            )
        return value

    @field_validator("messages")
    @classmethod
    def _conversation(cls, messages: list[Message]) -> list[Message]:
        for i, m in enumerate(messages):
            if m.role in ("system", "developer") and i > 0:
                raise _custom(
                    "invalid_value",
                    "must not be 'system' here: only the first message may be a system message",
                    f"messages[{i}].role",
                )
        if messages[-1].role != "user":
            last = len(messages) - 1
            raise _custom(
                "invalid_value",
                f"must be 'user': the last message comes from the user (got '{messages[-1].role}')",
                f"messages[{last}].role",
            )
        return messages

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        caps = {self.max_tokens, self.max_completion_tokens} - {None}
        if len(caps) > 1:
            raise _custom(
                "invalid_value", "differs from max_completion_tokens; send one of them",
                "max_tokens",
            )  # fmt: skip
        if self.stream_options is not None and not self.stream:
            raise _custom(
                "invalid_value", "is allowed only with stream=true",
                "stream_options",
            )  # fmt: skip
        return self

    def normalized(self, max_new_tokens: int) -> ChatRequest:
        """Defaults filled in, `developer` read as `system`."""
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in self.messages
        ]
        return ChatRequest(
            messages,
            self.max_tokens or self.max_completion_tokens or max_new_tokens,
            float(self.temperature or 0.0),
            float(1.0 if self.top_p is None else self.top_p),
            self.seed,
            bool(self.stream),
            bool(self.stream_options and self.stream_options.include_usage),
        )


def parse_request(body: bytes, max_new_tokens: int) -> ChatRequest:
    """Check an OpenAI chat request; ApiError (400) names the offending parameter."""
    try:
        request = ChatCompletionRequest.model_validate_json(
            body, context={"max_new_tokens": max_new_tokens}
        )
    except ValidationError as exc:
        raise api_error(exc) from None
    return request.normalized(max_new_tokens)


# ------------------------------------------------------------------------------------------
# The one mapper: pydantic's first error -> OpenAI's error object

KINDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _param(loc: tuple[int | str, ...]) -> str | None:
    """('messages', 0, 'role') -> 'messages[0].role'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def api_error(exc: ValidationError) -> ApiError:
    """One 400 with OpenAI's error object from a validation error (its first error)."""
    err = exc.errors(include_url=False)[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    param = ctx.get("param") or _param(tuple(err["loc"]))
    if kind == "json_invalid":
        message = f"The request body is not valid JSON: {ctx.get('error', err['msg'])}."
        if "escape" in message or "surrogate" in message:
            message += " A \\u escape must be a whole character (a lone surrogate is not text)."
        return ApiError(400, message, None, "invalid_json")
    if kind in KINDS and param is None:
        return ApiError(400, "The request body must be a JSON object.", None, "invalid_json")
    if kind == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param, "missing")
    if kind == "extra_forbidden":
        *parent, key = err["loc"]
        if not parent:
            return ApiError(400, f"Unrecognized request argument supplied: {key}", param)
        return ApiError(
            400, f"{_param(tuple(parent))}: unsupported field '{key}'.", param, "invalid_value"
        )
    if kind in KINDS:
        message = f"'{param}' must be {KINDS[kind]} (got {_shown(err['input'])})."
        return ApiError(400, message, param, "invalid_type")
    if kind in ("invalid_type", "invalid_value", "unsupported_value", "unsupported_parameter"):
        return ApiError(400, f"'{param}' {err['msg']}.", param, kind)  # our own messages
    # Bounds, literals, lengths: pydantic's sentence, the parameter and the value.
    message = f"Invalid value for '{param}': {err['msg']} (got {_shown(err['input'])})."
    return ApiError(400, message, param, "invalid_value")
