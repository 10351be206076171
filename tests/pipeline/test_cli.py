"""The ``ensemble`` command's surface: help, exit codes and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble.cli import EXIT_CODES, main
from ensemble.exceptions import ArtifactError, ConfigError, DataError, EnsembleError

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("finetune", "logits", "fuse", "evaluate", "predict", "run"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--set KEY=VALUE" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["run", "missing.yaml"], 2, "recipe 'missing.yaml' does not exist"),
    (["run", str(REPO / "recipes" / "synthetic.yaml"), "--set", "seeed=1"], 2,
     "unknown key 'seeed'"),
    (["run", str(REPO / "recipes" / "synthetic.yaml"), "--set", "nonsense"], 2, "key=value"),
    (["predict", "/nonexistent/bundle", "--text", "hi"], 3, "not a bundle directory"),
])
def test_errors_are_one_line_with_an_exit_code(argv: list[str], code: int, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_predict_argument_errors(synthetic_run: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    bundle = str(synthetic_run / "bundle")
    assert main(["predict", bundle, "-q"]) == 4
    assert "at least one --image" in capsys.readouterr().err
    assert main(["predict", bundle, "-q", "--image", "nope.png"]) == 4
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", bundle, "-q", "--text", "a", "--text", "b", "--image", "-"]) == 4
    assert "in pairs" in capsys.readouterr().err


def test_exit_codes_are_specific_first() -> None:
    from ensemble.cli import _exit_code

    assert _exit_code(ConfigError("x")) == 2
    assert _exit_code(ArtifactError("x")) == 3
    assert _exit_code(DataError("x")) == 4
    assert _exit_code(EnsembleError("x")) == 1
    assert list(EXIT_CODES)[-1] is EnsembleError


def test_python_dash_m_entry_point() -> None:
    from conftest import run_cli

    result = run_cli("--version")
    assert result.stdout.startswith("ensemble ")
