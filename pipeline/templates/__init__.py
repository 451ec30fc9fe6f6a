"""Chat templates shipped with the embedded tiny model (Qwen2.5-Instruct's, verbatim)."""
