"""The LLM judge over real HTTP on loopback: a scripted OpenAI-compatible server in a thread
(verdicts, junk, position bias, HTTP errors, a slow judge), MLflow's GenAI evaluation views fed
with its verdicts, and the project's own `python -m pipeline serve` as a stand-in judge."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.evaluation.judge import (
    JudgeConfig,
    JudgeError,
    JudgeUnreachable,
    answer_records,
    answer_scorer,
    complete,
    judge_pairwise,
    log_genai_evaluation,
    pairwise_records,
    pairwise_scorer,
)

ANSWER = re.compile(r"\[回答 A / Answer A\]\n(.*)\n\n\[回答 B / Answer B\]\n(.*)\n\n只输出", re.S)
QUESTION = re.compile(r"\[问题 / Question\]\n(.*?)\n", re.S)

# (question, reference, challenger, champion): the scripted judge prefers the answer that names
# the condition asked about; "(junk)" and "(bias)" questions get junk and always "[[A]]".
ITEMS = [
    ("痔疮有什么症状？", "便血、肛门疼痛。", "痔疮常见便血、肛门疼痛。", "急性鼻窦炎常见鼻塞。"),
    ("牙周炎的症状是什么？", None, "流感常见发热、咳嗽。", "牙周炎常见牙龈出血。"),
    ("胃炎怎么办？", None, "胃炎宜清淡饮食。", "胃炎应规律进食。"),
    ("感冒有什么症状？(junk)", None, "感冒常见流涕。", "咳嗽。"),
    ("高血压要注意什么？(bias)", None, "高血压要低盐饮食。", "多运动。"),
]
CONDITION = re.compile(r"^(痔疮|牙周炎|胃炎|感冒|高血压)")


def scripted_verdict(prompt: str) -> str:
    question = QUESTION.search(prompt).group(1)
    a, b = ANSWER.search(prompt).groups()
    if "(junk)" in question:
        return "我认为 A 更好。"  # a bare letter: no verdict
    if "(bias)" in question:
        return "[[A]]"
    name = CONDITION.match(question).group(1)
    if (name in a) == (name in b):
        return "[[TIE]]"
    return "<think>比较两个回答。</think>\n[[A]]" if name in a else "[[B]]"


class Stub:
    """A real HTTP server answering POST /v1/chat/completions with `reply(prompt)`; records
    every request (path, headers, body)."""

    def __init__(self, reply=scripted_verdict, status: int = 200, delay_s: float = 0.0):
        self.requests: list[tuple[str, dict, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, dict(self.headers), body))
                time.sleep(delay_s)
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if status != 200:
                    return self._send(status, b'{"error": {"message": "model overloaded"}}')
                content = reply(body["messages"][-1]["content"])
                out = content if isinstance(content, bytes) else json.dumps(_completion(content))
                return self._send(200, out if isinstance(out, bytes) else out.encode())

            def _send(self, code: int, data: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _completion(content: str | None) -> dict:
    message = {"role": "assistant", "content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


@contextmanager
def stub(**kwargs) -> Iterator[Stub]:
    server = Stub(**kwargs)
    try:
        yield server
    finally:
        server.close()


def config(endpoint: str | None, **changes) -> JudgeConfig:
    fields = dict(model="big-judge", api_key_env=None, timeout_s=10, max_items=50, max_tokens=32)
    return JudgeConfig(endpoint=endpoint, **(fields | changes))


def test_pairwise_verdicts_over_http(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "secret-123")
    with stub() as server:
        result = judge_pairwise(config(server.url, api_key_env="JUDGE_TEST_KEY"), ITEMS)
    assert [j.outcome for j in result.items] == ["win", "loss", "tie", "no_verdict", "tie"]
    assert result.counts() == {
        "win": 1,
        "loss": 1,
        "tie": 2,
        "no_verdict": 1,
        "inconsistent": 1,
        "items": 5,
    }
    assert result.rates()["win_rate"] == pytest.approx(0.2)
    # Two requests per item, challenger first, then champion first; the request as configured.
    assert len(server.requests) == 10
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret-123"
    assert body["model"] == "big-judge" and body["max_tokens"] == 32 and body["temperature"] == 0
    a, b = ANSWER.search(body["messages"][-1]["content"]).groups()
    assert (a, b) == (ITEMS[0][2], ITEMS[0][3])
    a, b = ANSWER.search(server.requests[1][2]["messages"][-1]["content"]).groups()
    assert (a, b) == (ITEMS[0][3], ITEMS[0][2])
    assert "便血、肛门疼痛。" in body["messages"][-1]["content"]  # the reference, when given
    # Raw replies are kept as received, parsed or not.
    first, second = result.items[0].verdicts
    assert (first.raw, first.parsed, second.raw, second.parsed) == (
        "<think>比较两个回答。</think>\n[[A]]",
        "A",
        "[[B]]",
        "B",
    )
    junk = result.items[3].verdicts
    assert [v.raw for v in junk] == ["我认为 A 更好。"] * 2 and {v.parsed for v in junk} == {None}
    assert [v.parsed for v in result.items[4].verdicts] == ["A", "A"]
    saved = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert saved["items"][4]["inconsistent"] is True and "secret-123" not in json.dumps(saved)


def test_only_max_items_are_judged():
    with stub() as server:
        result = judge_pairwise(config(server.url, max_items=2), ITEMS)
    assert len(result.items) == 2 and len(server.requests) == 4


def test_a_null_reply_is_no_verdict():
    with stub(reply=lambda prompt: None) as server:
        result = judge_pairwise(config(server.url), ITEMS[:1])
    assert result.items[0].outcome == "no_verdict"
    assert [v.raw for v in result.items[0].verdicts] == ["", ""]


@pytest.mark.parametrize(
    ("kwargs", "endpoint_suffix", "words"),
    [
        ({"status": 503}, "", "answered HTTP 503: "),
        ({}, "/extra", "answered HTTP 404"),
        ({"reply": lambda prompt: b"<html>not json</html>"}, "", "expected JSON"),
        ({"reply": lambda prompt: b'{"text": "[[A]]"}'}, "", "expected an OpenAI chat.completion"),
    ],
)
def test_a_judge_that_is_not_an_openai_api_is_a_typed_error(kwargs, endpoint_suffix, words):
    with stub(**kwargs) as server:
        with pytest.raises(JudgeError, match=re.escape(words)) as err:
            judge_pairwise(config(server.url + endpoint_suffix), ITEMS)
    assert not isinstance(err.value, JudgeUnreachable) and "\n" not in str(err.value)


def test_a_judge_slower_than_the_timeout_is_unreachable():
    with stub(delay_s=2.0) as server:
        with pytest.raises(JudgeUnreachable, match=re.escape(server.url)):
            complete(config(server.url, timeout_s=0.3), [{"role": "user", "content": "hi"}])


@pytest.mark.slow
def test_verdicts_and_answer_scores_in_mlflow_genai_evaluation(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("judge", artifact_location=(tmp_path / "a").as_uri())
    with stub() as server:
        result = judge_pairwise(config(server.url), ITEMS)

    def names_condition(question: str, answer: str, reference: str | None) -> bool:
        return CONDITION.match(question).group(1) in answer

    questions = [q for q, *_ in ITEMS]
    challenger = [c for *_, c, _ in ITEMS]
    references = [r for _, r, *_ in ITEMS]
    with mlflow.start_run(experiment_id=experiment) as parent:
        pair_run, pair = log_genai_evaluation(
            pairwise_records(result), [pairwise_scorer(result)], "judge"
        )
        answer_run, answers = log_genai_evaluation(
            answer_records(questions, challenger, references),
            [answer_scorer("names_condition", names_condition)],
            "challenger answers",
        )
    assert pair == {"judge_win/mean": pytest.approx(0.2), "judge_no_verdict/mean": 0.2}
    assert answers == {"names_condition/mean": pytest.approx(0.8)}
    for run_id in (pair_run, answer_run):
        run = mlflow.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # One trace per judged item, its outcome with both raw replies as an assessment.
    traces = mlflow.search_traces(run_id=pair_run, return_type="list")
    assert len(traces) == 5
    outcomes = {}
    for trace in traces:
        [feedback] = [a for a in trace.info.assessments if a.name == "judge_outcome"]
        outcomes[json.loads(trace.data.request)["item"]] = (feedback.value, feedback.rationale)
    assert outcomes[0] == (
        "win",
        "challenger_first: '<think>比较两个回答。</think>\\n[[A]]' -> A; "
        "champion_first: '[[B]]' -> B",
    )
    assert outcomes[3][0] == "no_verdict" and "'我认为 A 更好。' -> None" in outcomes[3][1]

    def broken(question: str, answer: str, reference: str | None) -> bool:
        raise KeyError("no such term")

    with pytest.raises(RuntimeError, match="broken"):
        log_genai_evaluation(
            answer_records(questions[:1], challenger[:1], [None]),
            [answer_scorer("broken", broken)],
            "broken",
        )


@pytest.mark.slow
def test_the_projects_own_serve_as_a_stand_in_judge(tmp_path, monkeypatch, prepared):
    """Its verdicts are nonsense (a tiny model trained on medical answers); what is tested is
    that each raw verdict is exactly the served model's answer to the judge's prompt, parsed
    and combined like any other."""
    import httpx

    from pipeline.evaluation import evaluate
    from pipeline.evaluation.judge import combine, parse_verdict, prompt
    from pipeline.registry import register
    from pipeline.training import train
    from tests.conftest import (
        PERMISSIVE_GATE,
        REPO,
        TINY_OVERRIDES,
        TRAIN_ROWS,
        read_rows,
    )
    from tests.e2e.test_serve import Server, _expected

    overrides = {**TINY_OVERRIDES, **PERMISSIVE_GATE, "evaluate.max_samples": 2}
    overrides |= {"serve.reload_interval_s": 0.5, "serve.max_prompt_tokens": 4000}
    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "p", rows, overrides)
    root = cfg.root
    monkeypatch.chdir(root)
    for stage in (train, evaluate, register):
        stage.run(cfg)

    server = Server(root, tmp_path / "serve.log")
    try:
        server.wait_for(
            lambda: httpx.get(f"{server.url}/health", timeout=5).status_code == 200, "version 1"
        )
        result = judge_pairwise(config(f"{server.url}/v1", max_tokens=8), ITEMS[:2])
    finally:
        server.stop()
    assert len(result.items) == 2
    for judged in result.items:
        q, ref, challenger, champion = judged.item
        shown = {
            "challenger_first": (challenger, champion),
            "champion_first": (champion, challenger),
        }
        for v in judged.verdicts:
            expected = _expected(cfg.register_.model_name, "1", prompt(q, ref, *shown[v.order]), 8)
            assert v.raw == expected.text
            assert v.parsed == parse_verdict(v.raw)
        assert judged.outcome == combine(*(v.for_challenger for v in judged.verdicts))
    print(f"\nserve as a judge: {result.counts()}; raw: {result.items[0].verdicts[0].raw!r}")
    assert server.logs().count("POST /v1/chat/completions 200") == 4
