"""Data: the ingest, validate and split stages, and the readers, detectors and rules they share."""
