"""`serve` for a team: an API key as OpenAI clients send it (`Authorization: Bearer`), a 401 in
OpenAI's shape without it, /health open, and no listening beyond loopback without a key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.errors import ConfigError
from pipeline.modeling import ModelSpec
from pipeline.serving import Champion, create_app
from pipeline.serving.auth import ENV_KEY, authorized, check_host, is_loopback, resolve_key
from tests.conftest import REPO
from tests.unit.test_serve import ANSWERS, LIMITS, USER, ScriptedModel

KEY = "sk-team-0123456789abcdef"


@pytest.fixture
def keyed(tiny_tokenizer):
    """The app with a key, serving version 1 of a scripted model (as tests/unit/test_serve.py)."""
    from fastapi.testclient import TestClient

    spec = ModelSpec("tiny", "main", False, "float32", "none")
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = tiny_tokenizer(ANSWERS["1"], add_special_tokens=False)["input_ids"] + [im_end]
    champion = Champion(
        "qwen-medical-lora", "champion", 0, lambda: "1",
        lambda version: (ScriptedModel(script), tiny_tokenizer, spec),
    )  # fmt: skip
    with TestClient(create_app(champion, LIMITS, api_key=KEY)) as c:
        yield c


def _chat(client, headers):
    return client.post("/v1/chat/completions", json={"messages": [USER]}, headers=headers)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer sk-wrong"}, "invalid_api_key"),
        ({"Authorization": f"Bearer {KEY}x"}, "invalid_api_key"),  # a longer key is not it
        ({"Authorization": f"Bearer {KEY[:-1]}"}, "invalid_api_key"),  # nor a prefix of it
        ({"Authorization": f"Basic {KEY}"}, "invalid_api_key"),  # the key, wrong scheme
        ({"Authorization": KEY}, "invalid_api_key"),  # no scheme at all
        ({"X-Api-Key": KEY}, "missing_api_key"),  # not where OpenAI clients put it
    ],
)
def test_without_the_key_every_route_is_a_401_in_openai_shape(keyed, headers, code):
    for r in (_chat(keyed, headers), keyed.get("/v1/models", headers=headers)):
        assert r.status_code == 401, r.text
        error = r.json()["error"]
        assert error == {**error, "type": "invalid_request_error", "param": None, "code": code}
        assert set(error) == {"message", "type", "param", "code"}
        assert KEY not in r.text and "sk-wrong" not in r.text  # the key sent is never echoed
        assert r.headers["www-authenticate"] == "Bearer"


def test_the_right_key_is_answered_and_health_is_open(keyed):
    r = _chat(keyed, {"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "流鼻涕，发烧。龘"
    assert _chat(keyed, {"authorization": f"bearer {KEY}"}).status_code == 200  # any case
    [model] = keyed.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert model["id"] == "qwen-medical-lora:v1"
    health = keyed.get("/health")  # no header: load balancers probe it
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_authorized_compares_the_whole_key():
    assert authorized(f"Bearer {KEY}", KEY)
    assert not authorized(None, KEY) and not authorized("", KEY)
    assert not authorized("Bearer ", KEY) and not authorized(f"Token {KEY}", KEY)
    assert not authorized(f"Bearer {KEY.upper()}", KEY)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_key(host):
    assert is_loopback(host)
    check_host(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myhost.example", ""])
def test_other_hosts_are_refused_without_a_key(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match=ENV_KEY):
        check_host(host, None)
    check_host(host, KEY)


def test_key_comes_from_the_flag_else_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    assert resolve_key(None) is None
    monkeypatch.setenv(ENV_KEY, KEY)
    assert resolve_key(None) == KEY and resolve_key("sk-flag") == "sk-flag"
    for bad in ("", "  ", f" {KEY}", f"{KEY}\n"):
        with pytest.raises(ConfigError, match="empty or has leading/trailing spaces"):
            resolve_key(bad)


def test_serve_on_all_interfaces_without_a_key_exits_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "pipeline", "-p", str(REPO / "params.yaml")]
    out = subprocess.run(
        [*cmd, "serve", "--host", "0.0.0.0"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == ConfigError.exit_code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: serve --host 0.0.0.0: refusing") and ENV_KEY in lines[-1]
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert "Traceback" not in out.stderr and "mlflow" not in out.stderr.lower()
