"""`python -m pipeline serve` as a real process: OpenAI-shaped answers that equal the registered
model's own, 4xx for bad requests, and a new champion picked up without a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from pipeline.evaluation import evaluate
from pipeline.registry import register
from pipeline.registry import versions as registry
from pipeline.training import train
from tests.conftest import (
    REPO,
    TINY_OVERRIDES,
    TRAIN_ROWS,
    read_rows,
    register_degraded,
)
from tests.e2e.test_pipeline import PERMISSIVE_GATE
from tests.unit.test_serve import BAD_REQUESTS, LIMITS

pytestmark = pytest.mark.slow
MAX_NEW = LIMITS.max_new_tokens  # the same caps as the unit test's bad requests assume
OVERRIDES = {
    **TINY_OVERRIDES,
    **PERMISSIVE_GATE,
    "evaluate.max_samples": 2,
    "serve.reload_interval_s": 0.5,
    "serve.max_new_tokens": MAX_NEW,
    "serve.max_prompt_tokens": LIMITS.max_prompt_tokens,
}
QUESTION = "感冒有什么症状？"
MULTI_TURN = [
    {"role": "system", "content": "你是一名医生。"},
    {"role": "user", "content": "胃疼吃什么药？"},
    {"role": "assistant", "content": "可以先用抑酸药。"},
    {"role": "user", "content": "感冒有什么症状？"},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@cache
def _reference(name: str, version: str):
    """The registered model of a version, as `chat` loads it."""
    from pipeline.registry import registered_model

    return registered_model.load(f"models:/{name}/{version}")


def _expected(name: str, version: str, messages: list[dict], max_new: int = MAX_NEW):
    from pipeline.generation import generate

    m = _reference(name, version)
    [answer] = generate(m.model, m.tokenizer, m.spec, [messages], max_new)
    return answer


JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


def _assert_code_model(name: str, version: str, into) -> None:
    """The registered version holds no pickle, its code file answers through MLflow's own
    loader, and that answer is the one `chat` and the server give."""
    import mlflow

    uri = f"models:/{name}/{version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert "registered_model.py" in files and "artifacts/adapter/adapter_model.safetensors" in files
    assert not [f for f in files if f.endswith((".pkl", ".bin", ".pt", ".pth", ".ckpt"))], files
    by_mlflow = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    [answer] = by_mlflow.predict(None, [QUESTION], {"max_new_tokens": MAX_NEW})
    assert answer == _expected(name, version, [{"role": "user", "content": QUESTION}]).text


def _short_body(port: int, half_close: bool) -> bytes:
    """POST with Content-Length 100 and 14 bytes of body; what the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n" + b'{"messages": ['
        )
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):  # until the server closes the connection
            data += chunk
        return data


class Server:
    def __init__(self, root, log_path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--port", str(self.port)],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, check, what: str, timeout: float = 180):
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.logs()}"
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.logs()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def test_serve_answers_like_the_registry_and_follows_the_champion(tmp_path, monkeypatch, prepared):
    import httpx

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "p", rows, OVERRIDES)
    root = cfg.root
    monkeypatch.chdir(root)
    name = cfg.register_.model_name
    train.run(cfg)

    server = Server(root, tmp_path / "serve.log")
    http = httpx.Client(base_url=server.url, timeout=60)
    try:
        # Nothing registered yet: 503 with what to do, and the server keeps looking.
        server.wait_for(lambda: http.get("/health").status_code == 503, "the server to start")
        r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and "promote a version" in r.json()["error"]["message"]

        for stage in (evaluate, register):
            result = stage.run(cfg)
        assert result.version == 1 and "champion" in result.aliases
        _assert_code_model(name, "1", tmp_path / "v1")
        server.wait_for(lambda: http.get("/health").json()["version"] == "1", "version 1")
        health = http.get("/health").json()
        assert health == {**health, "status": "ok", "model": name, "alias": "champion"}
        [listed] = http.get("/v1/models").json()["data"]
        assert listed["id"] == f"{name}:v1" and listed["version"] == "1"

        # A good request: OpenAI's shape, the registered model's own greedy answer.
        started = time.perf_counter()
        r = http.post(
            "/v1/chat/completions",
            json={"model": name, "messages": [{"role": "user", "content": QUESTION}]},
        )
        latency = time.perf_counter() - started
        print(f"\none chat completion on the tiny model: {latency * 1000:.0f} ms")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == f"{name}:v1"
        [choice] = body["choices"]
        expected = _expected(name, "1", [{"role": "user", "content": QUESTION}])
        assert choice["message"] == {"role": "assistant", "content": expected.text}
        assert choice["finish_reason"] == ("stop" if expected.stopped else "length")
        usage = body["usage"]
        assert usage["completion_tokens"] == expected.new_tokens + expected.stopped
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens"] > 20  # chat template and default system prompt included

        # Multi-turn with the client's own system prompt goes through the same chat template.
        r = http.post("/v1/chat/completions", json={"messages": MULTI_TURN, "max_tokens": 8})
        short = _expected(name, "1", MULTI_TURN, 8)
        assert r.json()["choices"][0]["message"]["content"] == short.text
        assert r.json()["usage"]["completion_tokens"] == short.new_tokens + short.stopped <= 8
        r = http.post("/v1/chat/completions", json={"messages": MULTI_TURN})
        expected_multi = _expected(name, "1", MULTI_TURN)
        assert r.json()["choices"][0]["message"]["content"] == expected_multi.text

        # Streaming: the same text, in chunks, then the finish reason, the usage and [DONE].
        with http.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": QUESTION}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == expected.text
        assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]
        assert chunks[-1]["usage"] == usage

        # Malformed requests: 4xx with OpenAI's error object naming the parameter.
        for bad, status, param, words in BAD_REQUESTS:
            raw = bad if isinstance(bad, str) else json.dumps(bad, ensure_ascii=False)
            r = http.post("/v1/chat/completions", content=raw.encode(), headers=JSON)
            err = r.json()["error"]
            assert (r.status_code, err["param"]) == (status, param), (bad, r.text)
            assert words in err["message"]
        r = http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "痛" * 400}]}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert (
            f"maximum prompt length is {LIMITS.max_prompt_tokens} tokens"
            in r.json()["error"]["message"]
        )
        assert http.get("/v1/nothing").status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405
        r = http.post("/v1/chat/completions", json={"messages": MULTI_TURN}, headers=TEXT)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        # A body shorter than its Content-Length: answered (408) when the client stalls, a
        # clean close when it gives up; never held, never a 500.
        assert _short_body(server.port, half_close=False).startswith(b"HTTP/1.1 408 ")
        assert _short_body(server.port, half_close=True) == b""
        assert http.get("/health").status_code == 200

        # A different version 2 (learning rate 0: the base itself), refused by the real gate;
        # the server keeps version 1 until the alias moves, then switches without a restart.
        result = register_degraded(root)
        assert result.version == 2 and result.gate.decision.promote is False
        assert http.get("/health").json()["version"] == "1"
        new = _expected(name, "2", [{"role": "user", "content": QUESTION}])
        new_multi = _expected(name, "2", MULTI_TURN)
        assert (new.text, new_multi.text) != (expected.text, expected_multi.text)
        promoted = subprocess.run(
            [sys.executable, "-m", "pipeline", "registry", "promote", "2", "--force"]
            + ["--reason", "serve test: switch without restart"],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
        )
        assert promoted.returncode == 0, promoted.stderr

        def answer(messages) -> dict:
            return http.post("/v1/chat/completions", json={"messages": messages}).json()

        server.wait_for(lambda: answer(MULTI_TURN)["model"] == f"{name}:v2", "version 2")
        assert answer(MULTI_TURN)["choices"][0]["message"]["content"] == new_multi.text
        single = answer([{"role": "user", "content": QUESTION}])
        assert single["choices"][0]["message"]["content"] == new.text

        registry.rollback(cfg)
        server.wait_for(lambda: answer(MULTI_TURN)["model"] == f"{name}:v1", "the rollback")
        assert answer(MULTI_TURN)["choices"][0]["message"]["content"] == expected_multi.text
        assert server.proc.poll() is None  # one process all along
    finally:
        http.close()
        server.stop()
    logs = server.logs()
    assert "now serving qwen-medical-lora version 2" in logs
    # Every bad request above is one log line with its code; nothing is a 500 or a traceback.
    assert "Traceback" not in logs and " 500 " not in logs
    assert "408 10" in logs and "request_timeout" in logs and "incomplete_body" in logs
    assert "invalid_type: 'presence_penalty' must be a number (got false)" in logs
    assert "POST /v1/chat/completions 200" in logs and "GET /v1/nothing 404" in logs
