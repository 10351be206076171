"""`ensemble run` and `ensemble score` on two CPU processes under torchrun (gloo): what they
write against one process, and a kill of rank 1 followed by a re-run (issue 14)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from _cli_runner import FAST, REPO, SYNTHETIC, cli_env, run_cli, run_torchrun, torchrun

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

CROSS_FIT = [*FAST, "--set", "cross_fit.folds=3"]
BY_FOLDS = [*CROSS_FIT, "--set", "cross_fit.parallel=folds"]

#: A text expert without dropout and a tfidf expert: data-parallel fine-tuning then differs
#: from one process only by the order of floating-point sums (no batch norm, no dropout
#: masks drawn per process) and the tfidf expert is fitted by the main process alone.
DATA_PARALLEL_RECIPE = """
name: synthetic-dp
data:
  source: synthetic
  options: {n_train: 96, n_validation: 64, n_test: 64, noise: 0.1}
experts:
  text:
    type: transformers
    column: text
    checkpoint: "tiny:synthetic"
    options:
      max_length: 16
      model_kwargs: {hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}
    training: {epochs: 6, learning_rate: 0.003, head_learning_rate: 0.003, batch_size: 32,
               early_stopping_patience: null}
  words: {type: tfidf, column: text}
combiners: [voting, stacking]
evaluation: {bootstrap: 20}
bundle: {combiner: stacking}
"""


def _tensor_files(run_dir: Path) -> dict[str, str]:
    """sha256 of every safetensors file a run keeps (weights, logits, combiners)."""
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*.safetensors"))
            if p.relative_to(run_dir).parts[0] not in ("work", "checkpoints")}


def _leaderboard(run_dir: Path) -> dict[str, dict]:
    rows = json.loads((run_dir / "report" / "metrics.json").read_text())["leaderboard"]
    return {row["model"]: row for row in rows}


def _markers(run_dir: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["fingerprint"]
            for p in (run_dir / "stages").glob("*.json")}


@pytest.fixture(scope="module")
def cross_fitted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic recipe with 3-fold cross-fitting, on one process."""
    run_dir = tmp_path_factory.mktemp("mp") / "one"
    run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q", *CROSS_FIT)
    return run_dir


def _assert_identical(run_dir: Path, reference: Path) -> None:
    files = _tensor_files(reference)
    assert len(files) > 20 and _tensor_files(run_dir) == files
    assert _leaderboard(run_dir) == _leaderboard(reference)
    # Same stage identities, but for the bundle's: it records the whole recipe, whose
    # cross_fit.parallel differs.
    assert {**_markers(run_dir), "bundle": ""} == {**_markers(reference), "bundle": ""}


def test_fold_parallel_run_is_bit_identical_to_one_process(cross_fitted_run: Path,
                                                            tmp_path: Path) -> None:
    run_dir = tmp_path / "folds"
    result = run_torchrun("run", str(SYNTHETIC), "--run-dir", str(run_dir), *BY_FOLDS)
    _assert_identical(run_dir, cross_fitted_run)
    # The folds of each expert were trained by both processes; only the main one reports.
    assert result.stdout.count("best combiner") == 1
    assert not (run_dir / "work").exists() or not any((run_dir / "work").iterdir())


def test_data_parallel_run_matches_one_process_within_rounding(tmp_path: Path) -> None:
    recipe = tmp_path / "dp.yaml"
    recipe.write_text(DATA_PARALLEL_RECIPE)
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli("run", str(recipe), "--run-dir", str(one), "-q")
    run_torchrun("run", str(recipe), "--run-dir", str(two), "-q")
    from safetensors.numpy import load_file

    for relative in ("experts/text/model.safetensors", "logits/test/logits/logits.safetensors",
                     "logits/validation/logits/logits.safetensors"):
        expected, got = load_file(one / relative), load_file(two / relative)
        assert expected.keys() == got.keys()
        for key, value in expected.items():
            if value.dtype.kind == "f" and not key.endswith(".words"):
                np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-4, err_msg=key)
            else:  # the tfidf expert was fitted and run by the main process alone
                np.testing.assert_array_equal(got[key], value, err_msg=key)
    expected_board, got_board = _leaderboard(one), _leaderboard(two)
    assert got_board.keys() == expected_board.keys()
    for model, row in expected_board.items():
        assert got_board[model]["accuracy"]["value"] == row["accuracy"]["value"], model
    assert _markers(two) == _markers(one)


def _rank_one(launcher: subprocess.Popen[bytes]) -> int | None:
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == "1":
                return child.pid
        except psutil.Error:
            continue
    return None


def test_a_killed_rank_leaves_a_run_that_resumes_to_the_same_result(
        cross_fitted_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    launcher = subprocess.Popen(
        torchrun("run", str(SYNTHETIC), "--run-dir", str(run_dir), *BY_FOLDS), cwd=REPO,
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = run_dir / "stages" / "finetune-image.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    rank_one = _rank_one(launcher)
    assert marker.exists() and rank_one is not None, "the run ended before the kill"
    import os

    os.kill(rank_one, signal.SIGKILL)  # rank 1, while the text expert's folds train
    assert launcher.wait(timeout=120) != 0  # torchrun stops rank 0 and fails
    assert not (run_dir / "stages" / "bundle.json").exists()
    run_torchrun("run", str(SYNTHETIC), "--run-dir", str(run_dir), *BY_FOLDS)
    _assert_identical(run_dir, cross_fitted_run)


def test_score_on_two_processes_writes_the_shards_of_one(synthetic_run: Path, score_rows,
                                                         tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rows, bundle = str(score_rows["parquet"]), str(synthetic_run / "bundle")
    run_cli("score", bundle, "--data", rows, "--out", str(tmp_path / "one"),
            "--shard-rows", "8", "-q")
    two = tmp_path / "two"
    result = run_torchrun("score", bundle, "--data", rows, "--out", str(two),
                          "--shard-rows", "8")
    assert "40 rows in 5 shards" in result.stderr and "by process 0 of 2" in result.stderr
    expected = pq.read_table(tmp_path / "one")
    assert pq.read_table(two).equals(expected)
    manifest = json.loads((two / "_manifest.json").read_text())
    assert manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [8] * 5
    # A shard lost after the run is scored again, by the process that owns it (3 % 2: the
    # second); the rest are kept.
    (two / "part-00003.parquet").unlink()
    again = run_torchrun("score", bundle, "--data", rows, "--out", str(two),
                         "--shard-rows", "8")
    assert "kept from an earlier run" in again.stderr
    assert pq.read_table(two).equals(expected)
