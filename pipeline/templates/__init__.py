"""Chat templates: Qwen2.5-Instruct's (the embedded tiny model's, verbatim), Qwen3's (tests),
and the ChatML of the original Qwen-7B-Chat's `make_context` (it ships no template)."""
