"""The LLM judge's strict parsing, the two-order combination and its config (no network)."""

from __future__ import annotations

import json
import socket

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.evaluation.judge import (
    JudgeConfig,
    JudgeError,
    JudgeItem,
    JudgeResult,
    JudgeUnreachable,
    challenger_view,
    combine,
    complete,
    judge_item,
    judge_pairwise,
    parse_verdict,
)

ITEM = JudgeItem("痔疮有什么症状？", "便血、肛门疼痛。", "痔疮常见便血和肛门疼痛。", "多喝水。")


def config(**changes) -> JudgeConfig:
    fields = {
        "endpoint": "http://127.0.0.1:9/v1",
        "model": "judge",
        "api_key_env": None,
        "timeout_s": 5,
        "max_items": 10,
        "max_tokens": 16,
    }
    return JudgeConfig(**(fields | changes))


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("[[A]]", "A"),
        ("  [[B]]\n", "B"),
        ("[[TIE]]", "TIE"),
        ("回答A讲的是所问的疾病，所以 [[A]]", "A"),
        ("[[B]] [[B]]", "B"),  # the same verdict repeated is still one verdict
        ("<think>也许是 [[B]]，不对。</think>\n[[A]]", "A"),  # reasoning is not the verdict
    ],
)
def test_bracketed_verdicts_parse(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "A",  # a bare letter occurs in any text: not accepted
        "B is better",
        "TIE",
        "[[a]]",
        "[A]",
        "[[ A ]]",
        "［［A］］",  # full-width brackets
        "[[C]]",
        "[[A]] 或者 [[B]]",  # two different verdicts
        "<think>[[A]] 思考没有结束",  # cut off inside <think>: no verdict after it
        "感冒有什么症状？感冒有什么症状？",  # what a tiny model answers
    ],
)
def test_anything_else_is_no_verdict(reply):
    assert parse_verdict(reply) is None


def test_verdicts_are_read_from_the_challengers_side():
    assert challenger_view("challenger_first", "A") == "win"
    assert challenger_view("challenger_first", "B") == "loss"
    assert challenger_view("champion_first", "A") == "loss"
    assert challenger_view("champion_first", "B") == "win"
    assert challenger_view("champion_first", "TIE") == "tie"
    assert challenger_view("challenger_first", None) == "no_verdict"


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("win", "win", "win"),
        ("loss", "loss", "loss"),
        ("tie", "tie", "tie"),
        ("win", "loss", "tie"),  # orders disagree
        ("win", "tie", "tie"),
        ("win", "no_verdict", "no_verdict"),
        ("no_verdict", "win", "no_verdict"),
        ("no_verdict", "no_verdict", "no_verdict"),
    ],
)
def test_a_win_needs_both_orders(first, second, outcome):
    assert combine(first, second) == outcome


def scripted(*replies: str):
    """A chat call that returns `replies` in turn and records the prompts it was sent."""
    sent: list[list[dict]] = []

    def ask(messages):
        sent.append(messages)
        return replies[len(sent) - 1]

    return ask, sent


def test_each_item_is_asked_in_both_orders():
    ask, sent = scripted("[[A]]", "[[B]]")
    judged = judge_item(ITEM, ask)
    first, second = (m[-1]["content"] for m in sent)
    assert first.index(ITEM.challenger) < first.index(ITEM.champion)
    assert second.index(ITEM.champion) < second.index(ITEM.challenger)
    assert ITEM.question in first and ITEM.reference in first
    assert [(v.order, v.raw, v.parsed) for v in judged.verdicts] == [
        ("challenger_first", "[[A]]", "A"),
        ("champion_first", "[[B]]", "B"),
    ]
    assert judged.outcome == "win" and not judged.inconsistent


@pytest.mark.parametrize("always", ["[[A]]", "[[B]]"])
def test_a_judge_that_always_picks_one_position_never_gives_a_win(always):
    judged = judge_item(ITEM, scripted(always, always)[0])
    assert judged.outcome == "tie"
    assert judged.inconsistent


def test_junk_in_one_order_is_no_verdict_not_a_win():
    judged = judge_item(ITEM, scripted("[[A]]", "我觉得A更好")[0])
    assert judged.outcome == "no_verdict"
    assert judged.verdicts[1].parsed is None
    assert judged.verdicts[1].raw == "我觉得A更好"


def test_a_prompt_without_reference_has_no_reference_block():
    ask, sent = scripted("[[TIE]]", "[[TIE]]")
    assert judge_item(ITEM._replace(reference=None), ask).outcome == "tie"
    assert "参考答案" not in sent[0][-1]["content"]


def test_counts_rates_and_raw_verdicts_in_the_result():
    replies = {
        "win": ("[[A]]", "[[B]]"),
        "loss": ("[[B]]", "[[A]]"),
        "bias": ("[[A]]", "[[A]]"),
        "junk": ("A", "[[B]]"),
    }
    items = tuple(judge_item(ITEM, scripted(*r)[0]) for r in replies.values())
    result = JudgeResult("http://x/v1", "judge", items)
    assert result.counts() == {
        "win": 1,
        "loss": 1,
        "tie": 1,
        "no_verdict": 1,
        "inconsistent": 1,
        "items": 4,
    }
    assert result.rates()["win_rate"] == 0.25
    assert result.rates()["no_verdict_rate"] == 0.25
    report = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert report["items"][3]["verdicts"][0] == {
        "order": "challenger_first",
        "raw": "A",
        "parsed": None,
        "for_challenger": "no_verdict",
    }
    assert report["items"][0]["item"]["question"] == ITEM.question
    assert result.metrics()["items"] == 4.0


def test_config_rejects_a_key_in_place_of_an_env_var_name():
    with pytest.raises(ValidationError, match="name of an environment variable"):
        config(api_key_env="sk-abc123")
    assert config(api_key_env="JUDGE_API_KEY").api_key_env == "JUDGE_API_KEY"


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8000/v1", "ftp://host/v1", "http:///v1", ""])
def test_config_rejects_an_endpoint_that_is_not_an_http_base_url(endpoint):
    with pytest.raises(ValidationError, match="base URL"):
        config(endpoint=endpoint)


def test_config_is_frozen_strict_and_off_when_endpoint_is_null():
    assert not config(endpoint=None).enabled
    assert config(endpoint="http://h:1/v1/").endpoint == "http://h:1/v1"

    class Section(BaseModel):  # how config.py's EvaluateConfig would hold it
        model_config = ConfigDict(frozen=True, extra="forbid")
        judge: JudgeConfig

    fields = {
        "endpoint": None,
        "model": "m",
        "api_key_env": None,
        "timeout_s": 1,
        "max_items": 1,
        "max_tokens": 1,
    }
    assert Section.model_validate({"judge": fields}).judge == JudgeConfig(**fields)
    with pytest.raises(ValidationError, match="judge.typo"):
        Section.model_validate({"judge": fields | {"typo": 1}})
    with pytest.raises(ValidationError, match="judge.max_tokens"):
        Section.model_validate({"judge": {k: v for k, v in fields.items() if k != "max_tokens"}})
    with pytest.raises(ValidationError, match="judge.timeout_s"):
        Section.model_validate({"judge": fields | {"timeout_s": 0}})
    with pytest.raises(AttributeError):
        config().model = "other"


def test_judging_with_the_judge_off_is_an_error():
    with pytest.raises(JudgeError, match="off"):
        judge_pairwise(config(endpoint=None), [tuple(ITEM)])


def test_a_missing_key_variable_is_named_before_any_request(monkeypatch):
    monkeypatch.delenv("JUDGE_TEST_KEY", raising=False)
    with pytest.raises(JudgeError, match="JUDGE_TEST_KEY"):
        judge_pairwise(config(api_key_env="JUDGE_TEST_KEY"), [tuple(ITEM)])


def test_an_endpoint_nobody_listens_on_is_unreachable_with_its_url():
    with socket.socket() as s:  # a loopback port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(endpoint=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(JudgeUnreachable) as err:
        complete(cfg, [{"role": "user", "content": "hi"}])
    message = str(err.value)
    assert f"http://127.0.0.1:{port}/v1" in message and "\n" not in message
