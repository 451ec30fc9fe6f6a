"""Evaluation: the evaluate stage, its sets, scores, statistics, gate, report; `score`."""
