"""Serve the registry's champion behind an OpenAI-compatible HTTP API.

    python -m pipeline serve [--host 127.0.0.1] [--port 8000] [--alias champion] [--api-key K]

- `POST /v1/chat/completions`: an OpenAI chat request in, an OpenAI `chat.completion` (or, with
  `"stream": true`, server-sent `chat.completion.chunk`s ending with `data: [DONE]`) out;
- `GET /v1/models`: the model being served, `GET /health`: status, name, version, alias.

The model is the registered pyfunc (`models:/<register.model_name>/<version>`), loaded the
same way `chat` loads it, and answers the same: the chat template of the base, the configured
system prompt unless the request brings its own, greedy decoding unless a temperature > 0 is
asked for, a stop at <|im_end|>. Until there is a champion, /health and completions answer 503
and the server keeps looking; generation is serialized by a lock (one model, one request at a
time).

The rooms:
- `schema`: the request as pydantic models (strict types) and the one mapper from a validation
  error to OpenAI's error object (every client error is a 4xx and one log line);
- `champion`: the alias watcher, which loads a new version while the old one keeps answering;
- `engine`: prompt, generation, streaming pieces, cancellation;
- `auth`: the API key (`Authorization: Bearer`, PIPELINE_API_KEY), required beyond loopback;
- `app`: the HTTP routes, the body reading (size, Content-Type, a body shorter than its
  Content-Length) and the request log.
"""

from pipeline.serving.app import MAX_BODY_BYTES, create_app, run
from pipeline.serving.champion import Champion, Served, mlflow_champion
from pipeline.serving.engine import Completion, Generator, prompt_ids
from pipeline.serving.schema import ApiError, ChatCompletionRequest, ChatRequest, parse_request

__all__ = [
    "MAX_BODY_BYTES",
    "ApiError",
    "ChatCompletionRequest",
    "ChatRequest",
    "Champion",
    "Completion",
    "Generator",
    "Served",
    "create_app",
    "mlflow_champion",
    "parse_request",
    "prompt_ids",
    "run",
]
