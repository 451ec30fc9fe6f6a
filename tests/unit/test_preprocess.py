"""Only assistant answers (and their closing <|im_end|>) are supervised."""

from pipeline.training.preprocess import IGNORE, encode

CHAT = [
    {"role": "user", "content": "头痛怎么办？"},
    {"role": "assistant", "content": "注意休息。"},
    {"role": "user", "content": "孩子可以吃药吗？"},
    {"role": "assistant", "content": "请遵医嘱。"},
]


def _supervised_text(tok, row) -> str:
    return tok.decode(
        [t for t, y in zip(row["input_ids"], row["labels"], strict=True) if y != IGNORE]
    )


def test_labels_cover_exactly_the_answers_and_im_end(tiny_tokenizer):
    row = encode(tiny_tokenizer, CHAT, max_len=512)
    assert _supervised_text(tiny_tokenizer, row) == "注意休息。<|im_end|>请遵医嘱。<|im_end|>"
    assert row["labels"][-1] == IGNORE  # the newline after the last <|im_end|>
    for tid, label in zip(row["input_ids"], row["labels"], strict=True):
        assert label in (IGNORE, tid)
    assert not row["truncated"] and row["length"] == len(row["input_ids"])


def test_prompt_tokens_are_never_supervised(tiny_tokenizer):
    row = encode(tiny_tokenizer, CHAT, max_len=512)
    unsupervised = tiny_tokenizer.decode(
        [t for t, y in zip(row["input_ids"], row["labels"], strict=True) if y == IGNORE]
    )
    assert "头痛怎么办？" in unsupervised and "孩子可以吃药吗？" in unsupervised
    assert "注意休息" not in unsupervised


def test_truncation_is_reported(tiny_tokenizer):
    full = encode(tiny_tokenizer, CHAT, max_len=512)
    cut = encode(tiny_tokenizer, CHAT, max_len=full["length"] - 3)
    assert cut["truncated"] and cut["length"] == full["length"] - 3
    assert len(cut["input_ids"]) == len(cut["labels"]) == cut["length"]
    assert cut["answer_tokens"] < full["answer_tokens"]
