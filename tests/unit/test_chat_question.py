"""`chat` with an empty or whitespace-only question is a usage error (exit 2, one line) raised
before the registry or any model is touched."""

from __future__ import annotations

import pytest

from pipeline.__main__ import main
from pipeline.errors import ConfigError


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_an_empty_question_exits_2_with_one_line_before_loading(project, capsys, question):
    with pytest.raises(SystemExit) as done:
        main(["-p", str(project / "params.yaml"), "chat", question])
    assert done.value.code == ConfigError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: chat: the question is empty"), err
    assert not (project / "mlflow").exists()  # no tracking store opened, no model loaded


def test_run_refuses_an_empty_question_too(project):
    from pipeline.config import load_config
    from pipeline.serving import chat

    with pytest.raises(ConfigError, match="question is empty"):
        chat.run(load_config(project / "params.yaml"), " ")
    assert not (project / "mlflow").exists()
