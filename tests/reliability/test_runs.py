"""Whole runs of ``recipes/synthetic.yaml``: reproducible to the bit, and a kill in the middle
of a save resumes to the same result without reading a half-written artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_runner import FAST, SYNTHETIC, run_cli
from _helpers import HERE, WALL_CLOCK, assert_killed, assert_same_tree, debris, run_python, run_tree

KILL = HERE / "_kill_worker.py"


def _run(run_dir: Path) -> Path:
    run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q", *FAST)
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every file of one clean run, normalised by :func:`run_tree`."""
    return run_tree(_run(tmp_path_factory.mktemp("reference") / "run"))


def test_synthetic_recipe_twice_gives_bit_identical_artifacts(
        reference: dict[str, object], tmp_path: Path) -> None:
    again = run_tree(_run(tmp_path / "again"))
    # Logits, experts, combiners and the bundle (safetensors), report.md and the plots are
    # compared byte for byte; JSON files (metrics.json, configs, stage markers, manifest)
    # value for value without the run's own path and the wall-clock fields.
    assert_same_tree(again, reference)
    assert {"report/report.md", "report/metrics.json", "logits/test/logits/logits.safetensors",
            "combiners/stacking/model.safetensors", "bundle/manifest.json"} <= set(reference)
    assert "report/report.md" in reference and isinstance(reference["report/report.md"], bytes)
    metrics = json.dumps(reference["report/metrics.json"])
    assert not any(f'"{field}"' in metrics for field in WALL_CLOCK)


def test_kill_while_saving_an_expert_resumes_to_the_same_result(
        reference: dict[str, object], tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    # The image expert is fine-tuned, then killed halfway through writing its weights.
    killed = run_python(KILL, "ensemble.experts.timm_image:save_model", "/experts/.image.", "cli",
                        "run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q", *FAST)
    assert_killed(killed)
    assert not (run_dir / "experts" / "image").exists(), "no half-written expert in place"
    assert not (run_dir / "stages" / "finetune-image.json").exists()
    assert [p for p in debris(run_dir) if p.startswith("experts/")], "killed mid-write"
    (state,) = run_dir.glob("work/image-*/checkpoint/state.json")
    finished = json.loads(state.read_text())
    trained = finished["history"]
    # Four epochs, or fewer when early stopping (on by default) ended it.
    assert len(trained) == 4 or finished["stopped_early"], "the fine-tune itself had finished"

    _run(run_dir)
    # The resumed stage read the last checkpoint back instead of training again (same
    # history, wall-clock times included), and everything equals a run never killed.
    assert json.loads((run_dir / "experts" / "image" / "ensemble.json").read_text())[
        "history"] == trained
    assert debris(run_dir) == []
    assert_same_tree(run_tree(run_dir), reference)
