"""Reliability defects of issue 11 (items 1, 3, 4, 7, 8, 9, 10), each reproduced as it was found:
folders the pipeline did not write are never deleted, errors are one line with their exit code,
personal data never reaches an output, empty or broken sources and unusable bases fail at once,
lineage digests match `sha256sum`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import model_source
from pipeline.config import SourceConfig, load_config
from pipeline.data import checks, sources, validate
from pipeline.errors import ConfigError, IngestError
from pipeline.io import atomic_dir
from pipeline.registry import export
from tests.conftest import REPO, make_project

ID_OK = "11010519491231002X"  # a valid MOD 11-2 check digit
MOBILE = "13812345678"
AUTO = SourceConfig(id="t", path="-", format="auto", encoding="auto")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m pipeline ...` of this checkout, run in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(stderr: str) -> str:
    """The stderr of a failed command, minus log lines: exactly one line, `error: ...`."""
    lines = [line for line in stderr.splitlines() if " INFO " not in line and line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# --- 1. export --out and atomic_dir never delete what the pipeline did not write ---------------


def _user_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "KEEP_ME.txt").write_text("keep")
    return root


def test_atomic_dir_refuses_the_current_directory_and_project_folders(project, monkeypatch):
    (project / "data" / "keep.txt").write_text("keep")
    monkeypatch.chdir(project)
    home = _user_folder(project.parent / "home")  # never the real home: a regression deletes it
    monkeypatch.setenv("HOME", str(home))
    for target in (Path("."), project, project.parent, home):
        with pytest.raises(ConfigError, match="refusing to replace"):
            with atomic_dir(target) as tmp:
                (tmp / "x").write_text("x")
    other = project.parent / "elsewhere"
    make_project(other)  # a project folder (params.yaml) that is not the current directory
    with pytest.raises(ConfigError, match="holds params.yaml"):
        with atomic_dir(other):
            pass
    assert (project / "params.yaml").is_file() and (project / "data" / "keep.txt").is_file()
    assert (other / "params.yaml").is_file() and (home / "KEEP_ME.txt").is_file()


def test_export_never_deletes_a_folder_it_did_not_write(project, tmp_path):
    cfg = load_config(project / "params.yaml")
    out = _user_folder(tmp_path / "out")
    for overwrite in (False, True):  # refused before anything is loaded, --overwrite or not
        with pytest.raises(ConfigError, match="--out"):
            export.run(cfg, "1", out, overwrite=overwrite)
        assert (out / "KEEP_ME.txt").read_text() == "keep" and (out / "sub").is_dir()
    with pytest.raises(ConfigError, match="current directory"):
        export.check_target(Path("."), overwrite=True)
    # An earlier export (its export.json) may be replaced with --overwrite, and only then.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / export.MARKER).write_text("{}")
    (earlier / "model.safetensors").write_text("old")
    with pytest.raises(ConfigError, match="not empty"):
        export.check_target(earlier, overwrite=False)
    export.check_target(earlier, overwrite=True)
    with atomic_dir(earlier, marker=export.MARKER) as tmp:
        (tmp / export.MARKER).write_text("{}")
    assert [p.name for p in earlier.iterdir()] == [export.MARKER]
    with pytest.raises(ConfigError, match="holds no export.json"):
        with atomic_dir(out, marker=export.MARKER):
            pass
    assert (out / "KEEP_ME.txt").exists()


def test_export_overwrites_its_own_earlier_export(project, tmp_path, monkeypatch):
    """The whole of export.run with the registry and the model faked: a second export into
    the first one's folder needs --overwrite and then replaces it."""
    from pipeline.modeling import ModelSpec
    from pipeline.registry import registered_model

    class Saved:
        def __init__(self, name: str):
            self.name = name

        def merge_and_unload(self):
            return self

        def save_pretrained(self, target, **kwargs):
            (Path(target) / self.name).write_text("weights")

    def download(uri, into):
        return ModelSpec.from_config(cfg), Path(into) / "adapter"

    monkeypatch.setattr(export, "_require_version", lambda cfg, version: None)
    monkeypatch.setattr(registered_model, "download", download)
    monkeypatch.setattr(export, "load_with_adapter", lambda s, a: (Saved("m"), Saved("t")))
    cfg = load_config(project / "params.yaml")
    out = tmp_path / "exported"
    export.run(cfg, "1", out)
    assert sorted(p.name for p in out.iterdir()) == [export.MARKER, "m", "t"]
    assert json.loads((out / export.MARKER).read_text())["model"].endswith("/1")
    with pytest.raises(ConfigError, match="--overwrite"):
        export.run(cfg, "2", out)
    export.run(cfg, "2", out, overwrite=True)
    assert json.loads((out / export.MARKER).read_text())["model"].endswith("/2")


# --- 9. every CLI error is one line with its own exit code -------------------------------------


def test_export_of_a_missing_or_malformed_version_is_one_line(project, tmp_path):
    missing = _cli("export", "999", "--out", str(tmp_path / "o"), cwd=project)
    assert missing.returncode == 5  # RegistryError
    assert "no version 999" in _one_error_line(missing.stderr)
    injected = _cli("export", "1' OR '1'='1", "--out", str(tmp_path / "o"), cwd=project)
    assert injected.returncode == 2  # ConfigError: not a version number
    assert "expected a version number" in _one_error_line(injected.stderr)
    assert not (tmp_path / "o").exists()


def test_mlflow_and_unexpected_errors_are_one_line(monkeypatch, capsys):
    from mlflow.exceptions import MlflowException

    from pipeline import __main__ as cli

    for raised, code, text in (
        (MlflowException("Registered Model with name=x not found\nmore"), 5, "MLflow: Registered"),
        (KeyError("boom"), 70, "unexpected KeyError"),
    ):

        def fail(args, exc=raised):
            raise exc

        monkeypatch.setattr(cli, "_dispatch", fail)
        with pytest.raises(SystemExit) as exit_:
            cli.main(["registry", "list"])
        assert exit_.value.code == code
        assert _one_error_line(capsys.readouterr().err).startswith(f"error: {text}")
    assert "exit codes:" in cli._parser().format_help()


# --- 7. empty sources and JSON that is not JSON ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty\.json: empty file \(0 bytes\)"),
        (" \n\n", r"empty\.json: empty file \(3 bytes, whitespace only\)"),
        ("[]", r"empty\.json: holds no records"),
        ('[{"conversations": []},\n]', r"empty\.json:2: trailing comma before '\]'"),
        ('[{"conversations": []}]\nmore', r"empty\.json:2: text after the closing '\]'"),
    ],
)
def test_empty_source_and_trailing_comma_are_errors(tmp_path, text, message):
    path = tmp_path / "empty.json"
    path.write_text(text)
    with pytest.raises(IngestError, match=message):
        sources.read_file(path, AUTO, "empty.json")


def test_validate_cli_fails_on_an_empty_file(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    done = _cli("-p", str(REPO / "params.yaml"), "validate", "empty.jsonl", cwd=tmp_path)
    assert done.returncode == IngestError.exit_code
    assert "empty.jsonl: empty file" in _one_error_line(done.stderr)


# --- 4. personal data is replaced before anything is written -----------------------------------

PII_TEXT = f"我的身份证{ID_OK}，电话{MOBILE}，头疼怎么办？"
VALID = {
    "id": ID_OK,
    "conversations": [
        {"role": "user", "content": PII_TEXT},
        {"role": "assistant", "content": "多休息。"},
    ],
}
MALFORMED = f'{{"conversations": [{{"role": "user", "content": "{PII_TEXT}"'


def test_ingest_replaces_personal_data_in_rows_ids_and_rejects(tmp_path):
    path = tmp_path / "pii.jsonl"
    path.write_text(json.dumps(VALID, ensure_ascii=False) + "\n" + MALFORMED + "\n")
    result = sources.read_file(path, AUTO, "pii.jsonl")
    written = json.dumps([result.rows, result.rejected], ensure_ascii=False)
    assert ID_OK not in written and MOBILE not in written
    [row], [bad] = result.rows, result.rejected
    assert row["conversations"][0]["content"] == "我的身份证[身份证号]，电话[手机号]，头疼怎么办？"
    assert row["record_id"] == "[身份证号]" and "[手机号]" in bad["raw"]
    assert {(n["message"], n["rule"]) for n in row["pii"]} == {
        (1, "pii_id_number"),
        (1, "pii_mobile"),
    }


@pytest.mark.parametrize(
    ("policy", "kept", "quarantined"), [("redact", 1, 1), ("quarantine", 0, 2), ("warn", 1, 1)]
)
def test_pii_policies_still_apply_to_replaced_data(
    tmp_path, monkeypatch, policy, kept, quarantined
):
    monkeypatch.setattr(validate, "_log_to_mlflow", lambda *a: None)
    path = tmp_path / "pii.jsonl"
    path.write_text(json.dumps(VALID, ensure_ascii=False) + "\n" + MALFORMED + "\n")
    overrides = {f"validate.policies.{r}": policy for r in ("pii_id_number", "pii_mobile")}
    cfg = load_config(REPO / "params.yaml", overrides)
    outcome = validate.check_files([path], cfg, AUTO)
    assert (len(outcome.kept), len(outcome.quarantined)) == (kept, quarantined)
    assert outcome.hits["pii_mobile"][0][1] == "message 1: mobile number 138****5678"
    assert outcome.redacted == (1 if policy == "redact" else 0)
    out = json.dumps([outcome.kept, outcome.quarantined], ensure_ascii=False)
    assert ID_OK not in out and MOBILE not in out


def test_redact_pii_never_leaves_part_of_a_number():
    text, found = checks.redact_pii(f"{ID_OK} {MOBILE} a.b@example.com 110105194912310021")
    assert text == "[身份证号] [手机号] [邮箱] 110105194912310021"  # a bad check digit stays
    assert set(found) == {"pii_id_number", "pii_mobile", "pii_email"}


# --- 8. model.base is checked when params load --------------------------------------------------


def _base(project: Path, base: str):
    return load_config(project / "params.yaml", {"model.base": base})


def test_a_missing_base_folder_fails_at_load_naming_the_key(project):
    started = time.monotonic()
    for base in ("/nonexistent/dir", "./models/none", "~/no/such/model/dir"):
        with pytest.raises(ConfigError, match=r"model\.base .*no such directory"):
            _base(project, base)
    (project / "empty_model").mkdir()
    with pytest.raises(ConfigError, match="holds no config.json"):
        _base(project, "empty_model")
    (project / "empty_model" / "config.json").write_text("{}")
    assert _base(project, "empty_model").model.base == "empty_model"
    assert _base(project, "tiny-qwen").uses_builtin_base
    assert time.monotonic() - started < 5


def _fake_cache(cache: Path, repo_id: str) -> None:
    """What `hf download` leaves: refs/main naming a snapshot that holds config.json."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text("{}")


def test_an_uncached_hub_id_offline_fails_at_once_and_a_cached_one_loads(
    project, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_source, "_reachable", lambda *a: pytest.fail("probed while offline"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"model\.base 'nosuch-org/nosuch-model'.*HF_HUB_OFFLINE"):
        _base(project, "nosuch-org/nosuch-model")
    assert time.monotonic() - started < 3
    _fake_cache(tmp_path / "hub", "Qwen/Qwen2.5-7B-Instruct")
    assert _base(project, "Qwen/Qwen2.5-7B-Instruct").model.base == "Qwen/Qwen2.5-7B-Instruct"
    # A profile for another machine can still be checked as a document.
    cfg = load_config(project / "params.yaml", {"model.base": "a/b"}, check_base=False)
    assert cfg.model.base == "a/b"


def test_an_unreachable_hub_is_probed_for_about_a_second(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def hangs(*args, **kwargs):  # a hub that never answers: the real call times out
        time.sleep(10)
        raise TimeoutError("timed out")

    monkeypatch.setattr(model_source.socket, "create_connection", hangs)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"model\.base 'org/model'.*cannot be reached"):
        _base(project, "org/model")
    assert time.monotonic() - started < 2.5


# --- 10. lineage digests are what sha256sum prints ----------------------------------------------


def test_lineage_file_digests_match_sha256sum(project):
    from pipeline.registry import register

    cfg = load_config(project / "params.yaml")
    paths = cfg.paths
    files = {
        paths.adapter_dir / "adapter_model.safetensors": os.urandom(4096),
        paths.adapter_dir / "adapter_config.json": b"{}",
        paths.adapter_dir / "tokenizer.json": b'{"model": {}}',
        paths.base_dir / "model.safetensors": os.urandom(512),
        paths.split_file("train"): b'{"a": 1}\n',
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    tags = register.lineage(cfg)

    def sha256sum(path: Path) -> str:
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]

    adapter = paths.adapter_dir / "adapter_model.safetensors"
    assert tags["adapter_sha256"] == sha256sum(adapter)
    assert tags["train_split_sha256"] == sha256sum(paths.split_file("train"))
    per_file = json.loads(tags["adapter_files_sha256"])
    assert per_file == {p.name: sha256sum(p) for p in files if p.parent == paths.adapter_dir}
    assert json.loads(tags["tokenizer_sha256"]) == {
        "tokenizer.json": hashlib.sha256(files[paths.adapter_dir / "tokenizer.json"]).hexdigest()
    }


# --- 3. a Python without the project's dependencies never runs a stage -------------------------


def test_an_interpreter_without_the_dependencies_stops_with_one_line(monkeypatch, capsys):
    from pipeline import environment

    assert environment.missing_requirements() == []  # this venv: the project's own
    monkeypatch.setattr(environment, "_requirements", lambda: ["pandas>=99", "nosuchpkg"])
    assert environment.missing_requirements()[1] == "nosuchpkg"
    assert environment.missing_requirements()[0].startswith("pandas>=99 (")
    monkeypatch.setattr(environment, "_project_python", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        environment.require_project_interpreter(["ingest"])
    assert exit_.value.code == 7
    assert "make run" in _one_error_line(capsys.readouterr().err)
    # A re-run that still lacks them stops too, instead of handing over again.
    monkeypatch.setattr(environment, "_project_python", lambda: pytest.fail("handed over twice"))
    monkeypatch.setenv(environment.REEXEC_FLAG, "1")
    with pytest.raises(SystemExit):
        environment.require_project_interpreter(["ingest"])
