"""Typed errors. The CLI turns each into one readable line and a non-zero exit."""


class PipelineError(Exception):
    """Base class: a problem the user can act on (bad input, bad config, refused gate)."""

    exit_code = 1
    transient = False  # True: the same call may succeed later (the nightly flow retries it)


class ConfigError(PipelineError):
    """params.yaml (or an override) is missing, malformed or holds an unexpected value."""

    exit_code = 2


class DataValidationError(PipelineError):
    """Input conversations broke a validation rule; the message names file:line and rule."""

    exit_code = 3


class ModelLoadError(PipelineError):
    """A base model, tokenizer or adapter could not be loaded as configured."""

    exit_code = 4


class RegistryError(PipelineError):
    """The MLflow registry holds nothing usable for the request (no champion, bad run id)."""

    exit_code = 5


class RegistryUnavailable(RegistryError):
    """The MLflow server (or its store) could not answer: connection refused, a timeout, a 5xx,
    a refused login. Never read as "nothing there": the message names the server."""

    transient = True


class IngestError(PipelineError):
    """A source cannot be read at all: missing file, undecodable bytes, a CSV header without
    the configured columns, a JSON array that does not parse. Names the file and position."""

    exit_code = 6


class SetupError(PipelineError):
    """The running Python lacks the project's dependencies (see pipeline/environment.py)."""

    exit_code = 7
