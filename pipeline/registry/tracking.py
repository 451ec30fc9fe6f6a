"""MLflow tracking set-up shared by train, evaluate and register.

One MLflow run per pipeline execution: `train` opens it and writes its id next to the adapter
(`mlflow_run.json`); `evaluate` and `register` reopen the same run, so params, the loss curve,
metrics, the gate decision and the registered model all sit on one run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import RegistryUnavailable

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"


def tracking_uri(cfg: Config) -> str:
    """MLFLOW_TRACKING_URI when set, else params' URI with relative sqlite paths made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.register_.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        db = cfg.root / uri[len(prefix) :]
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{prefix}{db}"
    return uri


def is_not_found(exc: Exception) -> bool:
    """MLflow answered that what was asked for does not exist (a registered model, version, run
    or alias), as opposed to not answering at all. MLflow 3.17 reports a missing model, version
    or run as RESOURCE_DOES_NOT_EXIST and an alias that is not set as INVALID_PARAMETER_VALUE
    "Registered model alias X not found."; every other error (connection refused, timeout, 5xx,
    refused login, a malformed answer) means the registry could not be read."""
    code = getattr(exc, "error_code", None)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    message = str(getattr(exc, "message", exc))
    alias_missing = re.search(r"\balias \S+ not found", message) is not None
    return code == "INVALID_PARAMETER_VALUE" and alias_missing


def shown_uri(uri: str) -> str:
    """The store's URI without a user name or password (never printed or logged)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _reason(exc: Exception) -> str:
    """What went wrong, short: the OS error, the HTTP status, or MLflow's first line (never a
    URL's query string: a presigned URL's carries its signature)."""
    message = re.sub(r"\?[\w.%-]+=[^\s'\")]*", "", str(getattr(exc, "message", exc)).strip())
    if errno := re.search(r"\[Errno -?\d+\] [^'\")\]]+", message):
        return errno.group(0).strip()
    if status := re.search(r"failed with error code (\d+)|too many (\d+) error responses", message):
        return f"HTTP {status.group(1) or status.group(2)}"
    if "timeout" in message.lower():
        return "timed out"
    if message.startswith("Could not connect to the endpoint URL"):  # botocore's, URL shown
        return "could not connect"
    first = message.splitlines()[0] if message else type(exc).__name__
    return first if len(first) <= 200 else first[:200] + "..."


def transport_errors() -> tuple[type[BaseException], ...]:
    """What the layers below MLflow raise when a store does not answer: boto (a client that
    reads the S3 store itself: an artifact location that is not proxied), requests / urllib3
    (HTTP: presigned URLs, a stream cut off), the OS's connection errors. Never a plain OSError:
    a full disk is not an outage."""
    import requests
    import urllib3

    errors: list[type[BaseException]] = [
        ConnectionError,
        TimeoutError,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
    ]
    try:
        import botocore.exceptions
    except ImportError:  # no S3 client installed: nothing of it can fail
        return tuple(errors)
    return (*errors, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _store(exc: Exception) -> str | None:
    """The artifact store `exc` says failed, in words, when it is the store rather than the
    tracking server: the server's proxied artifact API (`mlflow-artifacts`, the server answers
    but its object store does not) or a store the client read itself (boto, requests)."""
    from urllib.parse import urlsplit

    if "mlflow-artifacts" in str(getattr(exc, "message", exc)):
        return "proxied"
    url = (getattr(exc, "kwargs", None) or {}).get("endpoint_url")  # botocore's
    request = getattr(exc, "request", None)  # requests'
    url = url or getattr(request, "url", None)
    if url:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    if type(exc).__module__.startswith(("botocore", "boto3")):
        return os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "S3")
    return None


def unavailable(exc: Exception, doing: str, uri: str | None = None) -> RegistryUnavailable:
    """A one-line error naming the server (or the artifact store) that could not answer, for
    `raise ... from None`."""
    import mlflow

    server = shown_uri(uri or mlflow.get_registry_uri())
    store = _store(exc)
    if store == "proxied":
        return RegistryUnavailable(
            f"MLflow server at {server} could not read its artifact store while {doing} "
            f"({_reason(exc)}): the server answers, the object store behind it (its "
            "--artifacts-destination, e.g. S3) does not; nothing was decided: check that "
            "store and rerun"
        )
    if store:
        return RegistryUnavailable(
            f"artifact store at {store} could not be read while {doing} ({_reason(exc)}); "
            "nothing was decided: check the store (MLflow's artifact location; for S3 "
            "AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL and the keys) and rerun"
        )
    return RegistryUnavailable(
        f"MLflow registry at {server} could not be read while {doing} ({_reason(exc)}); "
        "nothing was decided: check the server (MLFLOW_TRACKING_URI) and rerun"
    )


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    from mlflow.exceptions import MlflowException

    import mlflow

    from_user = "MLFLOW_TRACKING_URI" in os.environ
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not from_user:
        # MLflow exports the URI to the environment; left there, it would override params.yaml
        # for the next project configured in this process (a flow or test running several).
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        return _experiment(cfg, uri)
    except MlflowException as exc:
        raise unavailable(exc, f"opening experiment {cfg.register_.experiment!r}", uri) from None


def _experiment(cfg: Config, uri: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(cfg.register_.experiment)
    if exp is None:
        location = None
        if not uri.startswith(("http://", "https://", "databricks")):
            # A local store would otherwise put artifacts under ./mlruns of the current directory.
            location = (cfg.root / cfg.register_.artifact_location).resolve().as_uri()
        experiment_id = mlflow.create_experiment(
            cfg.register_.experiment, artifact_location=location
        )
    else:
        experiment_id = exp.experiment_id
        follow_moved_project(cfg, uri, exp.artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# Where MLflow 3.17's sqlite store keeps absolute artifact URIs (written once, at creation:
# a run's artifact_uri is its experiment's artifact_location + run id, fixed for good).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("trace_tags", "value"),  # mlflow.artifactLocation
)


def follow_moved_project(cfg: Config, uri: str, stored: str) -> None:
    """A project folder that was moved or copied brings its sqlite store along, and the store
    still names the old folder's artifacts: new runs (and resumed ones) would write there.
    When the store lives in the project, the experiment's artifact location is a `file:` URI
    outside it and the configured location (inside it) is the same relative folder, every
    artifact URI under the old folder is rewritten to the project's (MLflow has no API to move
    an experiment's artifact location), so new artifacts land in the project and the moved
    ones stay readable. A server's store (`mlflow-artifacts:`, http) is never touched."""
    import sqlite3
    from urllib.parse import unquote, urlparse

    prefix = "sqlite:///"
    root = cfg.root.resolve()
    wanted = (root / cfg.register_.artifact_location).resolve()
    if not uri.startswith(prefix) or not stored.startswith("file:"):
        return
    db = Path(uri[len(prefix) :]).resolve()
    if not (db.is_relative_to(root) and wanted.is_relative_to(root)) or wanted == root:
        return
    old = Path(unquote(urlparse(stored).path))
    rel = wanted.relative_to(root).parts
    if stored == wanted.as_uri() or old.parts[-len(rel) :] != rel:
        return  # in place, or a location the user chose: left as MLflow keeps it
    new = wanted.as_uri()
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, col in ARTIFACT_COLUMNS:
            if table in tables:
                con.execute(
                    f"UPDATE {table} SET {col} = ? || substr({col}, ?) "  # noqa: S608 - constants
                    f"WHERE {col} = ? OR substr({col}, 1, ?) = ?",
                    (new, len(stored) + 1, stored, len(stored) + 1, stored + "/"),
                )
    # This process may have cached a run's artifact repository at the old place (MLflow keeps
    # one per run id): forget them, so a resumed run writes where its URI now points.
    from mlflow.tracking._tracking_service import utils

    getattr(utils, "_artifact_repos_cache", {}).clear()
    log.warning("MLflow store %s was moved with the project: artifacts now under %s", db, new)


def git_commit(root: Path) -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:  # no git on this machine (e.g. a bare GPU image)
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def library_version(name: str) -> str:
    """The installed version; mlflow counts as installed as mlflow-skinny (the client alone)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in (name, f"{name}-skinny"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "not installed"


def dvc_lock_hashes(root: Path) -> dict[str, str]:
    """md5s that dvc.lock records for the pipeline's data and model paths (when it exists)."""
    import yaml

    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    wanted = ("data/raw", "data/split", "data/processed", "models/base", "models/adapter")
    return {
        entry["path"]: entry.get("md5", "")
        for stage in stages.values()
        for entry in stage.get("deps", []) + stage.get("outs", [])
        if entry.get("path") in wanted
    }


def run_tags(cfg: Config) -> dict[str, str]:
    """Tags for the training run: code, data (DVC md5s), base model and library versions."""
    libs = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets", "mlflow")
    tags = {
        "git_commit": git_commit(cfg.root),
        "base_model": cfg.model.base,
        "base_revision": cfg.model.revision,
        "libraries": ", ".join(f"{n}=={library_version(n)}" for n in libs),
    }
    return tags | {f"dvc_md5.{p}": md5 for p, md5 in dvc_lock_hashes(cfg.root).items()}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def save_run_id(directory: Path, run_id: str) -> None:
    (directory / RUN_FILE).write_text(json.dumps({"run_id": run_id}) + "\n")


def resume_run(cfg: Config):
    """Reopen the run that trained the current adapter (or a new one if the store lost it)."""
    from mlflow.exceptions import MlflowException

    import mlflow

    experiment_id = setup(cfg)
    run_id = None
    run_file = cfg.paths.adapter_dir / RUN_FILE
    if run_file.exists():
        run_id = json.loads(run_file.read_text())["run_id"]
        try:
            mlflow.get_run(run_id)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise unavailable(exc, f"reopening run {run_id}") from None
            log.warning(
                "MLflow run %s not found in %s; starting a new run",
                run_id,
                shown_uri(tracking_uri(cfg)),
            )
            run_id = None
    return mlflow.start_run(run_id=run_id, experiment_id=experiment_id)
