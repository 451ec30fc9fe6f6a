"""Generation for the server: the prompt as the pipeline renders it, one request at a time,
text pieces streamed as they become final, a stop at <|im_end|>, cancellation when the client
goes away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import TextStreamer

from pipeline.generation import prompt
from pipeline.serving.champion import Served
from pipeline.serving.schema import ChatRequest

log = logging.getLogger(__name__)

# Fast (Rust) tokenizers may refuse concurrent use ("Already borrowed"): one user at a time.
TOKENIZER_LOCK = threading.Lock()


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop": an end token came; "length": max_tokens cut the answer
    prompt_tokens: int
    completion_tokens: int  # generated tokens, the end token included


def prompt_ids(served: Served, messages: list[dict[str, str]]) -> list[int]:
    """The prompt of pipeline.generation.prompt (the one every entry point sends), as ids."""
    tok = served.tokenizer
    text = prompt(tok, served.spec, messages)
    with TOKENIZER_LOCK:
        return tok(text, add_special_tokens=False)["input_ids"]


class _Deltas(TextStreamer):
    """transformers' TextStreamer (it holds back half characters and unfinished words), its
    pieces handed to `on_delta` with the answer's outer whitespace held back, as the final
    answer is stripped. Decoding takes the tokenizer lock."""

    def __init__(self, tok, on_delta: Callable[[str], None]):
        super().__init__(tok, skip_prompt=True, skip_special_tokens=True)
        self.on_delta = on_delta
        self.text = ""  # everything finalized so far
        self.sent = ""  # what on_delta was given: a prefix of text.strip()

    def put(self, value) -> None:
        with TOKENIZER_LOCK:
            super().put(value)

    def end(self) -> None:
        with TOKENIZER_LOCK:
            super().end()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text += text
        visible = self.text.strip()
        if visible.startswith(self.sent) and len(visible) > len(self.sent):
            self.on_delta(visible[len(self.sent) :])
            self.sent = visible


class Generator:
    """One generation at a time (a lock): the model is not shared between requests."""

    def __init__(self):
        self.lock = threading.Lock()

    def complete(
        self,
        served: Served,
        req: ChatRequest,
        ids: list[int],
        on_delta: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from pipeline.generation import finish, stop_ids

        class Cancelled(StoppingCriteria):  # the client went away
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        tok, model = served.tokenizer, served.model
        stops = stop_ids(tok)
        streamer = _Deltas(tok, on_delta) if on_delta is not None else None
        sampling: dict[str, Any] = {"do_sample": False}
        if req.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": req.temperature,
                "top_p": req.top_p,
                "top_k": 0,  # OpenAI has no top-k
            }
        device = next(model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        with self.lock, torch.no_grad():
            if req.seed is not None and req.temperature > 0:
                torch.manual_seed(req.seed)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=req.max_tokens,
                eos_token_id=stops,
                pad_token_id=tok.pad_token_id,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Cancelled()] if cancel else []),
                **sampling,
            )
        with TOKENIZER_LOCK:
            answer = finish(tok, out[0, len(ids) :].tolist(), stops)
        sent = streamer.sent if streamer else ""
        if on_delta is not None and answer.text != sent:
            if answer.text.startswith(sent):
                on_delta(answer.text[len(sent) :])
            else:  # decoding a prefix gave other characters: the stream cannot be mended
                log.warning("serve: streamed text %r is not a prefix of %r", sent, answer.text)
        return Completion(
            answer.text,
            "stop" if answer.stopped else "length",
            len(ids),
            answer.new_tokens + answer.stopped,
        )
