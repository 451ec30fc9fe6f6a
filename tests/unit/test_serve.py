"""The OpenAI-compatible server without MLflow or a trained model: request checks, response
shapes, streaming, and following the alias (a scripted model stands in for the LoRA model)."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.config import ServeConfig
from pipeline.modeling import ModelSpec
from pipeline.serve import ApiError, Champion, create_app, parse_request

LIMITS = ServeConfig(reload_interval_s=0, max_prompt_tokens=120, max_new_tokens=32)
USER = {"role": "user", "content": "感冒有什么症状？"}
SYSTEM = {"role": "system", "content": "x"}
PARTS = ("胃疼", "吃什么药？")

# (body, status, param, words of the message): each is refused before any model runs.
BAD_REQUESTS = [
    ("{not json", 400, None, "not valid JSON"),
    ("[1, 2]", 400, None, "JSON object"),
    ({}, 400, "messages", "Missing required parameter"),
    ({"messages": []}, 400, "messages", "non-empty list"),
    ({"messages": "hello"}, 400, "messages", "non-empty list"),
    ({"messages": [{"role": "doctor", "content": "x"}]}, 400, "messages[0].role", "must be one"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role", "must be one"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, "messages[0].content", "string"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content", "missing"),
    ({"messages": [USER, {"role": "assistant", "content": "x"}]}, 400, "messages[1].role", "last"),
    ({"messages": [USER, SYSTEM, USER]}, 400, "messages[1].role", "only"),
    ({"messages": [USER], "n": 2}, 400, "n", "n=1"),
    ({"messages": [USER], "max_tokens": 0}, 400, "max_tokens", "positive integer"),
    ({"messages": [USER], "max_tokens": 33}, 400, "max_tokens", "limit of 32"),
    ({"messages": [USER], "max_completion_tokens": -1}, 400, "max_completion_tokens", "positive"),
    ({"messages": [USER], "temperature": 3}, 400, "temperature", "0 to 2"),
    ({"messages": [USER], "top_p": 0}, 400, "top_p", "(0, 1]"),
    ({"messages": [USER], "stream": "yes"}, 400, "stream", "boolean"),
    ({"messages": [USER], "stop": ["\n"]}, 400, "stop", "not supported"),
    ({"messages": [USER], "tools": [{"type": "function"}]}, 400, "tools", "not supported"),
    ({"messages": [USER], "best_of": 2}, 400, "best_of", "Unrecognized request argument"),
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

    def parameters(self):
        import torch

        yield torch.zeros(1)

    def generate(self, input_ids, max_new_tokens, eos_token_id, streamer=None, **kwargs):
        import torch

        self.calls.append(kwargs)
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


def _chat(client, **body):
    return client.post("/v1/chat/completions", json={"messages": [USER], **body})


def test_no_champion_is_a_503_that_says_what_to_do(client):
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "no_model"
    r = _chat(client)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "promote a version" in r.json()["error"]["message"]
    assert client.get("/v1/models").json() == {"object": "list", "data": []}


def test_completion_shape_usage_and_finish_reasons(client, registry, tiny_tokenizer):
    from pipeline.serve import prompt_ids

    registry["alias"] = "1"
    r = _chat(client, model="gpt-4o")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "qwen-medical-lora:v1" and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "流鼻涕，发烧。龘"}  # stripped
    assert choice["finish_reason"] == "stop"
    served = registry["champion"].current
    answer_ids = tiny_tokenizer(ANSWERS["1"], add_special_tokens=False)["input_ids"]
    assert body["usage"] == {
        "prompt_tokens": len(prompt_ids(served, [USER])),
        "completion_tokens": len(answer_ids) + 1,  # the <|im_end|> counts
        "total_tokens": len(prompt_ids(served, [USER])) + len(answer_ids) + 1,
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
    r = client.post("/v1/chat/completions", content=b"{", headers={"content-type": "text/plain"})
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
