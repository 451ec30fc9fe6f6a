"""Follow a registry alias: load the version it points to and swap it in while serving.

A background thread checks which version holds the alias every `serve.reload_interval_s`
seconds (0: also on every request, which then waits for the check) and loads a new one while
the old one goes on answering; the swap is one assignment, and a request is answered to the
end by the model it started with. A version that fails to load is logged and the old one keeps
serving (the failed one is retried after a minute).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.modeling import ModelSpec

log = logging.getLogger(__name__)

RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long


@dataclass(frozen=True)
class Served:
    """One loaded registry version; replaced as a whole when the alias moves."""

    name: str
    version: str
    alias: str
    model: Any
    tokenizer: Any
    spec: ModelSpec
    loaded_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return f"{self.name}:v{self.version}"


Loader = Callable[[str], tuple[Any, Any, ModelSpec]]  # version -> model, tokenizer, spec


class Champion:
    """Follows a registry alias: `current` is the loaded version, swapped when the alias moves.

    `resolve()` returns the version the alias points to (None: no such alias or model);
    `load(version)` returns model, tokenizer and spec. Both are injected, so this logic is
    tested without MLflow or a model.
    """

    def __init__(
        self,
        name: str,
        alias: str,
        interval_s: float,
        resolve: Callable[[], str | None],
        load: Loader,
    ):
        self.name, self.alias, self.interval_s = name, alias, interval_s
        self._resolve, self._load = resolve, load
        self.current: Served | None = None
        self.alias_version: str | None = None  # what the alias pointed to at the last check
        self.last_error: str | None = None
        self.loading: str | None = None  # the version being loaded now
        self._failed: dict[str, float] = {}  # version -> monotonic time of its failed load
        self._lock = threading.Lock()  # one check / load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Served | None:
        """Check the alias; load and swap in its version if it moved. Never raises."""
        with self._lock:
            try:
                version = self._resolve()
            except Exception as exc:  # the registry is down: keep serving what we have
                error = f"cannot read alias {self.alias!r}: {exc}"
                if error != self.last_error:  # once, not at every check
                    log.error("serve: %s", error)
                self.last_error = error
                return self.current
            previous, self.alias_version = self.alias_version, version
            if version is None:
                if self.current is not None and previous is not None:
                    log.warning(
                        "serve: %s has no alias %r now; still serving version %s",
                        self.name, self.alias, self.current.version,
                    )  # fmt: skip
                return self.current
            if self.current is not None and self.current.version == version:
                self.last_error = None
                return self.current
            failed_at = self._failed.get(version)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_S:
                return self.current
            old = self.current.version if self.current else None
            log.info(
                "serve: loading %s version %s (%s; was %s)", self.name, version, self.alias, old
            )
            started, self.loading = time.monotonic(), version
            try:
                model, tokenizer, spec = self._load(version)
            except Exception as exc:
                self._failed[version] = time.monotonic()
                self.last_error = f"version {version} failed to load: {exc}"
                log.error(
                    "serve: %s version %s failed to load (%s); %s", self.name, version, exc,
                    f"still serving version {old}" if old else "nothing to serve yet",
                    exc_info=not isinstance(exc, PipelineError),  # typed: its line says it all
                )  # fmt: skip
                return self.current
            finally:
                self.loading = None
            self._failed.pop(version, None)
            self.last_error = None
            self.current = Served(self.name, version, self.alias, model, tokenizer, spec)
            log.info(
                "serve: now serving %s version %s (loaded in %.1f s)",
                self.name, version, time.monotonic() - started,
            )  # fmt: skip
            return self.current

    def for_request(self) -> Served | None:
        """The model a request uses: checked first when reload_interval_s is 0."""
        if self.interval_s == 0:
            return self.refresh()
        return self.current

    def start(self) -> None:
        """Load the alias's version and keep checking, in a daemon thread (returns at once)."""
        self._thread = threading.Thread(target=self._watch, name="champion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        period = self.interval_s or 1.0
        self.refresh()
        while not self._stop.wait(period):
            self.refresh()


def mlflow_champion(cfg: Config, alias: str) -> Champion:
    """A Champion over the configured MLflow registry, loading versions as `chat` does."""
    from mlflow.exceptions import MlflowException

    import mlflow
    from pipeline.registry import registered_model, tracking

    tracking.setup(cfg)
    name = cfg.register_.model_name
    client = mlflow.MlflowClient()

    def resolve() -> str | None:
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if tracking.is_not_found(exc):  # no such alias (or model): nothing to serve yet
                return None
            raise tracking.unavailable(exc, f"reading alias {alias!r} of {name}") from None

    def load(version: str) -> tuple[Any, Any, ModelSpec]:
        chat_model = registered_model.load(f"models:/{name}/{version}")
        return chat_model.model, chat_model.tokenizer, chat_model.spec

    return Champion(name, alias, cfg.serve.reload_interval_s, resolve, load)
