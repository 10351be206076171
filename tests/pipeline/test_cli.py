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
    assert "at least one --input" in capsys.readouterr().err
    assert main(["predict", bundle, "-q", "--image", "nope.png"]) == 4
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", bundle, "-q", "--text", "a", "--text", "b", "--image", "-"]) == 4
    assert "one value per example" in capsys.readouterr().err


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


def test_evaluate_a_saved_bundle(synthetic_run: Path, synthetic_data, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import shutil

    from ensemble.data import load_multimodal
    from ensemble.predictor import FusionPredictor

    bundle = tmp_path / "bundle"  # a copy: the default report folder is next to the bundle
    shutil.copytree(synthetic_run / "bundle", bundle)
    data = tmp_path / "data"
    synthetic_data.save_to_disk(str(data))
    argv = ["evaluate", "--bundle", str(bundle), "--data", str(data), "--id-column", "id",
            "--bootstrap", "20", "-q"]
    assert main(argv) == 0
    assert "auto" in capsys.readouterr().out  # the leaderboard
    out = tmp_path / "bundle-report-test"
    assert (out / "report.md").is_file() and (out / "plots" / "reliability.png").is_file()
    result = json.loads((out / "metrics.json").read_text())
    assert (result["n_examples"], result["fit_split"], result["bootstrap"]) == (
        64, "validation", 20)
    rows = {row["model"]: row for row in result["leaderboard"]}
    expected = FusionPredictor.load(bundle).evaluate(
        load_multimodal(data, id_column="id")["test"])
    for metric in ("accuracy", "macro_f1", "nll", "ece"):
        assert rows["auto"][metric]["value"] == pytest.approx(expected["fused"][metric])
        for name in ("image", "text"):
            assert rows[f"expert: {name}"][metric]["value"] == pytest.approx(
                expected[name][metric])
    assert rows["oracle (any expert right)"]["accuracy"]["value"] == pytest.approx(
        expected["oracle"]["accuracy"])
    # another split into a chosen folder; an earlier report there is replaced
    chosen = tmp_path / "reports" / "validation"
    for _ in range(2):
        assert main([*argv, "--split", "validation", "--out", str(chosen)]) == 0
    assert json.loads((chosen / "metrics.json").read_text())["n_examples"] == 64
    assert "validation split" in (chosen / "report.md").read_text()


def test_evaluate_bundle_argument_errors(synthetic_run: Path, synthetic_data, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bundle = str(synthetic_run / "bundle")
    data = tmp_path / "data"
    synthetic_data.save_to_disk(str(data))
    capsys.readouterr()  # the progress bar of save_to_disk
    base = ["evaluate", "--bundle", bundle, "--data", str(data), "--id-column", "id", "-q"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    for argv, code, message in (
        (["evaluate"], 2, "give a RECIPE, or --bundle"),
        (["evaluate", "--bundle", bundle], 2, "needs --data"),
        (["evaluate", str(REPO / "recipes" / "synthetic.yaml"), "--bundle", bundle, "--data",
          str(data)], 2, "not both"),
        ([*base, "--data-option", "nonsense"], 2, "--data-option expects KEY=VALUE"),
        ([*base, "--split", "dev"], 4, "has no split 'dev'"),
        ([*base, "--out", str(tmp_path / "busy")], 2, "not an earlier report"),
        ([*base, "--out", bundle], 2, "not an earlier report"),
        (["evaluate", "--bundle", "/nonexistent/bundle", "--data", str(data)], 3,
         "not a bundle directory"),
    ):
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"


def test_single_process_commands_refuse_several_processes(
        synthetic_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """torchrun / accelerate launch set WORLD_SIZE: commands that do not share their work
    (predict, export, evaluate --bundle) refuse at once instead of every rank writing the
    same file; `ensemble run` and `ensemble score` do share it (test_multiprocess.py)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(synthetic_run / "bundle"), "--text", "apple", "-q"])
    assert code == EXIT_CODES[ConfigError]
    err = capsys.readouterr().err
    assert "ensemble predict runs in one process" in err and "process 1 of 2" in err
    assert "`ensemble score`" in err
    code = main(["export", str(synthetic_run / "bundle"), "--out", str(tmp_path / "x"), "-q"])
    assert code == EXIT_CODES[ConfigError]
    assert not (tmp_path / "x").exists() and not out.exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    from ensemble.launch import world_size

    assert world_size() == 1 and world_size({"WORLD_SIZE": "x"}) == 1
