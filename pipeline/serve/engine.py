"""Generation for the server: the prompt as the pipeline renders it, one request at a time,
text pieces streamed as they become final, a stop at <|im_end|>, cancellation when the client
goes away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.generation import prompt
from pipeline.serve.champion import Served
from pipeline.serve.schema import ChatRequest

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


class _Deltas:
    """A `generate` streamer: new token ids in, text pieces out (on_delta), as they become
    final: whitespace at either end held back (the answer is stripped), and no half of a
    multi-byte character."""

    def __init__(self, tok, stops: list[int], on_delta: Callable[[str], None] | None):
        self.tok, self.stops, self.on_delta = tok, set(stops), on_delta
        self.ids: list[int] = []
        self.sent = ""
        self._prompt_seen = False
        self._stopped = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() hands over the prompt first
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self._stopped:
                return
            if token in self.stops:
                self._stopped = True
                return
            self.ids.append(token)
        if self.on_delta is None:
            return
        with TOKENIZER_LOCK:
            text = self.tok.decode(self.ids, skip_special_tokens=True).strip()
        if text.endswith("\ufffd"):
            return
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_delta(text[len(self.sent) :])
            self.sent = text

    def end(self) -> None:
        pass


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

        from pipeline.generation import stop_ids

        class Cancelled(StoppingCriteria):  # the client went away
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        tok, model = served.tokenizer, served.model
        stops = stop_ids(tok)
        streamer = _Deltas(tok, stops, on_delta)
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
        row = out[0, len(ids) :].tolist()
        cut = next((j for j, t in enumerate(row) if t in stops), None)
        body = row if cut is None else row[:cut]
        with TOKENIZER_LOCK:
            text = tok.decode(body, skip_special_tokens=True).strip()  # as generation.generate
        if on_delta is not None and text != streamer.sent:
            if text.startswith(streamer.sent):
                on_delta(text[len(streamer.sent) :])
            else:  # decoding a prefix gave other characters: the stream cannot be mended
                log.warning("serve: streamed text %r is not a prefix of %r", streamer.sent, text)
        return Completion(
            text,
            "stop" if cut is not None else "length",
            len(ids),
            len(body) + (cut is not None),
        )
