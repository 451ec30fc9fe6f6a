"""`registry promote` and the nightly flow's approval step move `champion` only over the
champion the version's gate compared against (issue 17): a version that waited for approval
while `champion` moved on is refused, as `register` refuses it (the stale-champion check).
A local sqlite MLflow store; versions are registered with the tags `register` sets."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.errors import RegistryError, RegistryUnavailable
from pipeline.evaluation import keys
from pipeline.registry import versions as registry

NAME = "qwen-medical-lora"


@pytest.fixture
def cfg(project):
    return load_config(project / "params.yaml")


def _register(c, compared: str | None, promote: bool = True, tagged: bool = True) -> str:
    """A version as `register` leaves it: its gate's verdict and (`tagged`) the champion its
    gate compared against."""
    if not c.search_registered_models(f"name='{NAME}'"):
        c.create_registered_model(NAME)
    version = c.create_model_version(NAME, "file:///nowhere/model").version
    c.set_model_version_tag(NAME, version, keys.GATE_PROMOTE_TAG, str(promote))
    if tagged:
        c.set_model_version_tag(NAME, version, keys.GATE_CHAMPION_TAG, keys.champion_tag(compared))
    return str(version)


def _champion(c) -> str | None:
    return registry.champion_version(c, NAME)


def test_promote_over_the_champion_the_gate_saw(cfg):
    c = registry.client(cfg)
    first = _register(c, None)
    assert "is now champion" in registry.promote(cfg, first)  # no champion then, none now
    second = _register(c, first)
    registry.promote(cfg, second)  # compared against version 1, which still held it
    assert _champion(c) == second


def test_promote_refuses_a_gate_decided_against_another_champion(cfg):
    c = registry.client(cfg)
    first = _register(c, None)
    registry.promote(cfg, first)
    waiting = _register(c, first)  # gated against version 1, waits for a reviewer ...
    other = _register(c, first)
    registry.promote(cfg, other)  # ... while version 3 becomes champion
    with pytest.raises(RegistryError) as refused:
        registry.promote(cfg, waiting)
    message = str(refused.value)
    assert not isinstance(refused.value, RegistryUnavailable) and "\n" not in message
    assert f"version {waiting}" in message
    assert f"compared it against version {first}" in message, message
    assert f"champion is now version {other}" in message, message
    assert "dvc repro --force --single-item evaluate" in message, message
    assert message.endswith('promote anyway with --force --reason "..."'), message
    assert _champion(c) == other

    # the CLI's override, as for a failed gate: --force with a reason, recorded
    with pytest.raises(RegistryError, match="--force needs --reason"):
        registry.promote(cfg, waiting, force=True)
    registry.promote(cfg, waiting, force=True, reason="reviewed against v3 by hand")
    assert _champion(c) == waiting
    tags = c.get_model_version(NAME, waiting).tags
    assert tags["forced_promotion_reason"] == "reviewed against v3 by hand"


def test_promote_refuses_a_gate_decided_when_there_was_no_champion(cfg):
    c = registry.client(cfg)
    first = _register(c, None)
    second = _register(c, None)  # both gated with no champion in the registry
    registry.promote(cfg, first)
    with pytest.raises(RegistryError, match="compared it against no champion"):
        registry.promote(cfg, second)
    assert _champion(c) == first


def test_versions_registered_before_the_tag_are_promoted_as_before(cfg):
    c = registry.client(cfg)
    first = _register(c, None, tagged=False)
    second = _register(c, None, tagged=False)
    registry.promote(cfg, first)
    registry.promote(cfg, second)
    assert _champion(c) == second


def test_the_approval_step_of_the_nightly_flow_refuses_too(cfg):
    from flows import nightly

    c = registry.client(cfg)
    first = _register(c, None)
    registry.promote(cfg, first)
    waiting = _register(c, first)
    other = _register(c, first)
    registry.promote(cfg, other)
    params = str(cfg.root / "params.yaml")
    with pytest.raises(RegistryError, match=f"champion is now version {other}"):
        nightly.record_approval.fn(params, int(waiting), "approved by dr-li", promote=True)
    assert _champion(c) == other
    assert c.get_model_version(NAME, waiting).tags["approval"] == "approved by dr-li"


def test_cli_refusal_is_one_line_exit_5(cfg, capsys, monkeypatch):
    from pipeline.__main__ import main

    c = registry.client(cfg)
    first = _register(c, None)
    registry.promote(cfg, first)
    waiting = _register(c, first)
    registry.promote(cfg, _register(c, first))
    monkeypatch.chdir(cfg.root)
    with pytest.raises(SystemExit) as done:
        main(["-p", str(cfg.root / "params.yaml"), "registry", "promote", waiting])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert done.value.code == RegistryError.exit_code and len(lines) == 1, err
    assert "compared it against version 1" in lines[0] and "Traceback" not in err
