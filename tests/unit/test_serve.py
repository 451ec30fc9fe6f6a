"""The OpenAI-compatible server without MLflow or a trained model: request checks, response
shapes, streaming, and following the alias (a scripted model stands in for the LoRA model)."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.config import ServeConfig
from pipeline.modeling import ModelSpec
from pipeline.serving import ApiError, Champion, create_app, parse_request

LIMITS = ServeConfig(reload_interval_s=0, max_prompt_tokens=120, max_new_tokens=32)
USER = {"role": "user", "content": "感冒有什么症状？"}
SYSTEM = {"role": "system", "content": "x"}
PARTS = ("胃疼", "吃什么药？")

DEEP = "[" * 200_000 + "]" * 200_000
# (body, status, param, words of the message): each is refused before any model runs.
BAD_REQUESTS = [
    ("{not json", 400, None, "not valid JSON"),
    ("[1, 2]", 400, None, "JSON object"),
    ({}, 400, "messages", "Missing required parameter"),
    ({"messages": []}, 400, "messages", "at least 1 item"),
    ({"messages": "hello"}, 400, "messages", "must be a list"),
    ({"messages": [{"role": "doctor", "content": "x"}]}, 400, "messages[0].role", "'user'"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role", "'assistant'"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, "messages[0].content", "string"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content", "Missing"),
    ({"messages": [{"role": "user", "content": "x", "x": 1}]}, 400, "messages[0].x", "field 'x'"),
    ({"messages": [USER, {"role": "assistant", "content": "x"}]}, 400, "messages[1].role", "last"),
    ({"messages": [USER, SYSTEM, USER]}, 400, "messages[1].role", "only the first"),
    ({"messages": [USER], "n": 2}, 400, "n", "n=1"),
    ({"messages": [USER], "max_tokens": 0}, 400, "max_tokens", "greater than 0"),
    ({"messages": [USER], "max_tokens": 33}, 400, "max_tokens", "limit of 32"),
    ({"messages": [USER], "max_tokens": 3.0}, 400, "max_tokens", "an integer"),
    ({"messages": [USER], "max_completion_tokens": -1}, 400, "max_completion_tokens", "than 0"),
    ({"messages": [USER], "temperature": 3}, 400, "temperature", "less than or equal to 2"),
    ({"messages": [USER], "temperature": "0.5"}, 400, "temperature", "a number"),
    ({"messages": [USER], "top_p": 0}, 400, "top_p", "greater than 0"),
    ({"messages": [USER], "stream": "yes"}, 400, "stream", "boolean"),
    ({"messages": [USER], "stream_options": {}}, 400, "stream_options", "stream=true"),
    ({"messages": [USER], "stop": ["\n"]}, 400, "stop", "not supported"),
    ({"messages": [USER], "tools": [{"type": "function"}]}, 400, "tools", "not supported"),
    ({"messages": [USER], "presence_penalty": 0.5}, 400, "presence_penalty", "not supported"),
    ({"messages": [USER], "best_of": 2}, 400, "best_of", "Unrecognized request argument"),
    # Issue 11, item 5: each of these was a 500 (two tracebacks) or passed.
    ('{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, None, "lone surrogate"),
    ({"messages": [USER], "temperature": 0.7, "seed": 2**70}, 400, "seed", "less than"),
    ('{"messages": ' + DEEP + "}", 400, None, "recursion limit"),
    ({"messages": [USER], "presence_penalty": False}, 400, "presence_penalty", "a number"),
    ({"messages": [USER], "frequency_penalty": True}, 400, "frequency_penalty", "a number"),
    ({"messages": [USER], "logprobs": 0}, 400, "logprobs", "a boolean"),
    ({"messages": [USER], "top_logprobs": False}, 400, "top_logprobs", "an integer"),
    ({"messages": [USER], "stop": False}, 400, "stop", "not supported"),
]  # fmt: skip


def _raw(body) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()


@pytest.mark.parametrize(("body", "status", "param", "words"), BAD_REQUESTS)
def test_bad_requests_are_refused_with_the_parameter_named(body, status, param, words):
    with pytest.raises(ApiError) as info:
        parse_request(_raw(body), LIMITS.max_new_tokens)
    err = info.value
    assert (err.status, err.param) == (status, param) and words in err.message
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}


def test_good_request_defaults_and_openai_variants():
    req = parse_request(_raw({"model": "anything", "messages": [USER]}), 32)
    assert (req.max_tokens, req.temperature, req.top_p, req.stream) == (32, 0.0, 1.0, False)
    req = parse_request(
        _raw(
            {
                "messages": [
                    {"role": "developer", "content": "你是医生。"},
                    {"role": "user", "content": [{"type": "text", "text": t} for t in PARTS]},
                ],
                "max_completion_tokens": 5,
                "temperature": 0.7,
                "stream": True,
                "stream_options": {"include_usage": True},
                "presence_penalty": 0,
                "stop": None,
                "user": "someone",
            }
        ),
        32,
    )  # fmt: skip
    assert req.messages == [
        {"role": "system", "content": "你是医生。"},
        {"role": "user", "content": "胃疼吃什么药？"},
    ]
    assert (req.max_tokens, req.temperature, req.stream, req.include_usage) == (5, 0.7, True, True)


class ScriptedModel:
    """Stands in for the LoRA model: `generate` emits a fixed token script, as HF does
    (prompt to the streamer first, stops at an end token, honours max_new_tokens)."""

    def __init__(self, script: list[int]):
        self.script = script
        self.calls: list[dict] = []
        self.prompts: list[list[int]] = []

    def parameters(self):
        import torch

        yield torch.zeros(1)

    def generate(self, input_ids, max_new_tokens, eos_token_id, streamer=None, **kwargs):
        import torch

        self.calls.append(kwargs)
        self.prompts.append(input_ids[0].tolist())
        out = input_ids[0].tolist()
        if streamer is not None:
            streamer.put(input_ids)
        for token in self.script[:max_new_tokens]:
            out.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if token in eos_token_id:
                break
        if streamer is not None:
            streamer.end()
        return torch.tensor([out])


ANSWERS = {"1": " 流鼻涕，发烧。龘 ", "2": "多喝水，注意休息。"}  # 龘: split into byte tokens


@pytest.fixture
def registry(tiny_tokenizer):
    """A fake registry: `state["alias"]` is the champion's version; loads are scripted."""
    state: dict = {"alias": None, "loads": [], "broken": set()}
    spec = ModelSpec("tiny", "main", False, "float32", "none")
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")

    def load(version):
        state["loads"].append(version)
        if version in state["broken"]:
            raise OSError(f"artifacts of version {version} are gone")
        script = tiny_tokenizer(ANSWERS[version], add_special_tokens=False)["input_ids"]
        return ScriptedModel(script + [im_end]), tiny_tokenizer, spec

    state["champion"] = Champion("qwen-medical-lora", "champion", 0, lambda: state["alias"], load)
    return state


@pytest.fixture
def client(registry):
    from fastapi.testclient import TestClient

    with TestClient(create_app(registry["champion"], LIMITS)) as c:
        yield c


JSON = "application/json"


def _chat(client, **body):
    return client.post("/v1/chat/completions", json={"messages": [USER], **body})


def test_no_champion_is_a_503_that_says_what_to_do(client):
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "no_model"
    r = _chat(client)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "promote a version" in r.json()["error"]["message"]
    assert client.get("/v1/models").json() == {"object": "list", "data": []}


def test_a_champion_that_cannot_be_loaded_is_not_reported_as_unset(client, registry):
    """The alias is set but its version fails to load (e.g. the artifact store is down): the
    503 says which version and why, not "is not set" (issue 17)."""
    registry["alias"], registry["broken"] = "3", {"3"}
    r = _chat(client)
    message = r.json()["error"]["message"]
    assert r.status_code == 503 and "is not set" not in message, message
    assert "(version 3) could not be loaded" in message, message
    assert "artifacts of version 3 are gone" in message and "retried every 60 s" in message, message
    assert client.get("/health").json()["status"] == "no_model"


# What a Qwen2.5 template makes of [USER], written out by hand (its default system prompt, no
# thinking block): the server must hand the model exactly these tokens.
PROMPT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n<|im_start|>user\n感冒有什么症状？<|im_end|>\n<|im_start|>assistant\n"
)


def test_completion_shape_usage_and_finish_reasons(client, registry, tiny_tokenizer):
    registry["alias"] = "1"
    r = _chat(client, model="gpt-4o")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "qwen-medical-lora:v1" and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "流鼻涕，发烧。龘"}  # stripped
    assert choice["finish_reason"] == "stop"
    prompt = tiny_tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    assert registry["champion"].current.model.prompts == [prompt]
    answer_ids = tiny_tokenizer(ANSWERS["1"], add_special_tokens=False)["input_ids"]
    assert body["usage"] == {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(answer_ids) + 1,  # the <|im_end|> counts
        "total_tokens": len(prompt) + len(answer_ids) + 1,
    }
    cut = _chat(client, max_tokens=2).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 2
    health = client.get("/health").json()
    assert (health["status"], health["version"], health["alias"]) == ("ok", "1", "champion")
    [model] = client.get("/v1/models").json()["data"]
    assert model["id"] == "qwen-medical-lora:v1" and model["object"] == "model"


def test_streaming_sends_the_same_text_in_chunks(client, registry):
    registry["alias"] = "1"
    whole = _chat(client).json()["choices"][0]["message"]["content"]
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"messages": [USER], "stream": True, "stream_options": {"include_usage": True}},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "".join(pieces) == whole and len([p for p in pieces if p]) > 2
    assert not any("\ufffd" in p for p in pieces)  # no half characters
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_prompt_over_the_cap_and_unknown_routes(client, registry):
    registry["alias"] = "1"
    r = _chat(client, messages=[{"role": "user", "content": "感冒" * 200}])
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == "context_length_exceeded"
    assert "maximum prompt length is 120 tokens" in err["message"]
    r = client.get("/v1/completions")
    assert (
        r.status_code == 404
        and r.json()["error"]["message"] == "Invalid URL (GET /v1/completions)."
    )
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = client.post("/v1/chat/completions", content=b"{", headers={"content-type": JSON})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/v1/chat/completions", content=b" " * (2 << 20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = client.post("/v1/chat/completions", content=iter([b" " * (1 << 20), b" {}"]))  # chunked
    assert r.status_code == 413


def test_alias_moves_are_followed_and_a_broken_version_keeps_the_old_one(client, registry):
    registry["alias"] = "1"
    assert _chat(client).json()["model"] == "qwen-medical-lora:v1"
    registry["alias"] = "2"
    answer = _chat(client).json()
    assert answer["model"] == "qwen-medical-lora:v2"
    assert answer["choices"][0]["message"]["content"] == ANSWERS["2"]
    registry["alias"], registry["broken"] = "3", {"3"}
    assert _chat(client).json()["model"] == "qwen-medical-lora:v2"  # still serving
    health = client.get("/health").json()
    assert health["version"] == "2" and health["alias_version"] == "3"
    assert "artifacts of version 3 are gone" in health["last_error"]
    _chat(client)
    assert registry["loads"] == ["1", "2", "3"]  # a failed version is not retried at once
    registry["alias"] = "1"
    assert _chat(client).json()["model"] == "qwen-medical-lora:v1"


def test_watcher_thread_swaps_while_old_requests_keep_their_model(registry):
    champion = registry["champion"]
    champion.interval_s = 0.02
    registry["alias"] = "1"
    champion.start()
    try:
        deadline = time.monotonic() + 10
        while champion.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
        in_flight = champion.current
        registry["alias"] = "2"
        while champion.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert champion.current.version == "2" and in_flight.version == "1"
        assert in_flight.model is not champion.current.model
    finally:
        champion.stop()


def test_temperature_zero_is_greedy_and_above_zero_samples(client, registry):
    registry["alias"] = "1"
    _chat(client)
    _chat(client, temperature=0.7, top_p=0.9, seed=3)
    greedy, sampled = registry["champion"].current.model.calls
    assert greedy["do_sample"] is False and "temperature" not in greedy
    assert sampled["do_sample"] is True
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 0)


# ------------------------------------------------------------------------------------------
# Issue 11, item 5: client inputs are 4xx in OpenAI's shape, each logged in one line.


def _bodies() -> list[tuple[bytes, str]]:
    """The issue's inputs (surrogate, 2**70 seed, deep nesting, bool for numbers) as raw
    bodies, with the Content-Type each is sent with."""
    raw = [_raw(b) for b, *_ in BAD_REQUESTS[-8:]]
    return [(b, JSON) for b in raw] + [(_raw({"messages": [USER]}), "text/plain")]


def test_issue_inputs_are_4xx_each_in_one_log_line(client, registry, caplog):
    registry["alias"] = "1"
    assert _chat(client).status_code == 200  # the model is there and answers
    caplog.set_level("INFO")
    for body, content_type in _bodies():
        caplog.clear()
        r = client.post(
            "/v1/chat/completions", content=body, headers={"content-type": content_type}
        )
        assert 400 <= r.status_code < 500, (body[:80], r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        [record] = [x for x in caplog.records if x.name.startswith("pipeline.serving")]
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert f" {r.status_code} " in record.getMessage()
        assert r.json()["error"]["message"] in record.getMessage()
    assert len(registry["champion"].current.model.calls) == 1  # none reached the model


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(client, registry, content_type):
    registry["alias"] = "1"
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/chat/completions", content=_raw({"messages": [USER]}), headers=headers)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    ok = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/v1/chat/completions", content=_raw({"messages": [USER]}), headers=ok)


def _call(app, chunks: list[dict], headers: dict[str, str]) -> list[dict]:
    """Drive the ASGI app directly with a scripted `receive` (after the chunks it waits)."""
    import asyncio

    sent: list[dict] = []

    async def receive():
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": None,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return sent


def _answer(sent: list[dict]) -> tuple[int, dict[str, str], dict]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, json.loads(body)


def test_a_body_shorter_than_its_content_length_is_answered_not_waited_for(
    registry, monkeypatch, caplog
):
    from pipeline.serving import app as serve_app

    monkeypatch.setattr(serve_app, "BODY_TIMEOUT_S", 0.3)
    app = create_app(registry["champion"], LIMITS)
    headers = {"content-type": JSON, "content-length": "100"}
    part = {"type": "http.request", "body": b'{"messages": [', "more_body": True}
    caplog.set_level("INFO")

    started = time.monotonic()
    status, got, body = _answer(_call(app, [dict(part)], headers))  # the client stalls
    assert time.monotonic() - started < 5
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert got["connection"] == "close" and "14 bytes of 100 bytes" in body["error"]["message"]

    gone = [dict(part), {"type": "http.disconnect"}]  # the client closes its side
    status, _, body = _answer(_call(app, gone, headers))
    assert (status, body["error"]["code"]) == (400, "incomplete_body")
    lines = [r for r in caplog.records if r.name.startswith("pipeline.serving")]
    assert [r.exc_info for r in lines] == [None, None] and len(lines) == 2


def test_a_bug_is_one_500_in_openai_shape_logged_once(registry, caplog):
    from fastapi.testclient import TestClient

    class Broken:
        def complete(self, *args, **kwargs):
            raise RuntimeError("the engine broke")

    registry["alias"] = "1"
    caplog.set_level("INFO")
    app = create_app(registry["champion"], LIMITS, Broken())
    with TestClient(app, raise_server_exceptions=False) as c:
        r = _chat(c)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "the engine broke" in r.json()["error"]["message"]
    logged = [x for x in caplog.records if x.exc_info]
    assert len(logged) == 1  # one traceback (a bug here), not one per middleware layer
