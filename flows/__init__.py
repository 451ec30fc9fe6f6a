"""Prefect flows: thin orchestration over the stage functions in pipeline/ (no torch here)."""
