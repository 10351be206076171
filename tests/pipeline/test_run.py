"""``ensemble run recipes/synthetic.yaml`` end to end: artifacts, report, skipping, resuming."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, REPO, SYNTHETIC, cli_env, run_cli

STAGES = ["finetune-image", "finetune-text", "logits-validation", "logits-test", "fuse-voting",
          "fuse-stacking", "fuse-gating", "fuse-selection", "fuse-feature_stacking", "evaluate",
          "bundle"]


def _leaderboard(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "report" / "metrics.json").read_text())["leaderboard"]


def _assert_same_results(run_dir: Path, reference: Path) -> None:
    got = {row["model"]: row for row in _leaderboard(run_dir)}
    expected = {row["model"]: row for row in _leaderboard(reference)}
    assert got.keys() == expected.keys()
    for model, row in expected.items():
        for metric, entry in row.items():
            if isinstance(entry, dict):
                assert got[model][metric]["value"] == pytest.approx(entry["value"], abs=1e-6), (
                    f"{model} {metric}: {got[model][metric]} != {entry}")


def test_run_writes_every_artifact(synthetic_run: Path) -> None:
    for stage in STAGES:
        marker = json.loads((synthetic_run / "stages" / f"{stage}.json").read_text())
        assert marker["fingerprint"] and marker["files"] and "inputs" in marker
    resolved = json.loads((synthetic_run / "recipe.json").read_text())
    assert resolved["name"] == "synthetic" and resolved["experts"]["text"]["column"] == "text"
    assert not (synthetic_run / "work").exists() or not any((synthetic_run / "work").iterdir())
    for name in ("report.md", "metrics.json", "plots/reliability.png", "plots/confusion.png",
                 "plots/gate_weights.png"):
        assert (synthetic_run / "report" / name).is_file(), name
    assert (synthetic_run / "bundle" / "manifest.json").is_file()


def test_report_content(synthetic_run: Path) -> None:
    metrics = json.loads((synthetic_run / "report" / "metrics.json").read_text())
    models = [row["model"] for row in metrics["leaderboard"]]
    assert models == ["expert: image", "expert: text", "voting", "stacking", "gating",
                      "selection", "feature_stacking", "auto", "oracle (any expert right)"]
    for row in metrics["leaderboard"][:-1]:
        for metric in ("accuracy", "macro_f1", "nll", "ece"):
            entry = row[metric]
            assert entry["low"] <= entry["value"] <= entry["high"] or metric == "ece"
    assert set(metrics["patterns"]) == {"both", "image only", "text only"}
    assert "expert: text" not in metrics["patterns"]["image only"]["models"]
    assert metrics["patterns"]["both"]["n"] == 64
    best = metrics["best_combiner"]
    assert set(metrics["per_class"]) == set(metrics["class_names"])
    report = (synthetic_run / "report" / "report.md").read_text()
    assert "## Leaderboard" in report and f"Per class: {best}" in report
    assert "![reliability diagrams](plots/reliability.png)" in report
    # The fused models learn what neither expert can alone (see make_synthetic).
    accuracy = {row["model"]: row["accuracy"]["value"] for row in metrics["leaderboard"]}
    assert accuracy[best] > max(accuracy["expert: image"], accuracy["expert: text"])
    # ... and the paired comparison with the better expert agrees with the leaderboard.
    versus = metrics["versus_best_expert"][best]
    expert = versus["expert"]
    assert accuracy[expert] == max(accuracy["expert: image"], accuracy["expert: text"])
    assert versus["difference"]["value"] == pytest.approx(accuracy[best] - accuracy[expert])
    assert (versus["wins"] - versus["losses"]) / metrics["n_examples"] == pytest.approx(
        versus["difference"]["value"])
    assert versus["difference"]["low"] > 0 and versus["mcnemar_p"] < 0.05
    assert f"## Versus the best expert ({expert})" in report


def test_rerun_skips_everything_and_prints_the_leaderboard(synthetic_run: Path) -> None:
    before = {s: (synthetic_run / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES}
    result = run_cli("run", str(SYNTHETIC), "--run-dir", str(synthetic_run), *FAST)
    for stage in STAGES:
        assert f"skip {stage}: up to date" in result.stderr
    assert "feature_stacking" in result.stdout and "oracle" in result.stdout
    after = {s: (synthetic_run / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES}
    assert before == after


def test_damaged_artifact_reruns_only_its_stage_and_downstream(
        synthetic_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(synthetic_run, run_dir)
    reference = _leaderboard(run_dir)
    weights = run_dir / "combiners" / "stacking" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7] + b"corrupt")
    shutil.rmtree(run_dir / "logits" / "test")
    result = run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), *FAST)
    ran = {line.split()[2] for line in result.stderr.splitlines() if "] run  " in line}
    # Recomputed artifacts have the same input fingerprints, so nothing downstream re-runs.
    assert ran == {"logits-test", "fuse-stacking"}
    assert "skip finetune-image" in result.stderr and "skip bundle" in result.stderr
    assert _leaderboard(run_dir) == reference


def test_changed_setting_reruns_dependent_stages(synthetic_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(synthetic_run, run_dir)
    result = run_cli("fuse", str(SYNTHETIC), "--run-dir", str(run_dir), *FAST,
                     "--set", "combiners.0.params.method=geometric")
    ran = {line.split()[2] for line in result.stderr.splitlines() if "] run  " in line}
    assert ran == {"fuse-voting", "fuse-selection"}  # selection reuses the fitted voting


def test_library_defaults_are_part_of_a_stage_identity(synthetic_run: Path) -> None:
    # A recipe leaves most settings to the library; when a default changes (a combiner's
    # hyper-parameter, the training loop's epochs or head learning rate), the stages that
    # depend on it must run again instead of reusing artifacts made under the old default.
    fuse = json.loads((synthetic_run / "stages" / "fuse-voting.json").read_text())
    assert fuse["inputs"]["defaults"]["pattern_guard"] is True
    finetune = json.loads((synthetic_run / "stages" / "finetune-text.json").read_text())
    defaults = finetune["inputs"]["defaults"]
    assert defaults["training"]["epochs"] == 10 and defaults["head_lr_multiplier"] == 10.0
    assert defaults["training"]["learning_rate"] == 5e-5  # transformers' default
    image = json.loads((synthetic_run / "stages" / "finetune-image.json").read_text())
    assert image["inputs"]["defaults"]["training"]["learning_rate"] == 1e-3  # timm's


def test_killed_run_resumes_and_gives_the_same_result(synthetic_run: Path, tmp_path: Path
                                                      ) -> None:
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "ensemble", "run", str(SYNTHETIC), "--run-dir",
               str(run_dir), "-q", *FAST]
    process = subprocess.Popen(command, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    marker = run_dir / "stages" / "finetune-image.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert marker.exists()
    result = run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), *FAST)
    assert "skip finetune-image: up to date" in result.stderr
    _assert_same_results(run_dir, synthetic_run)


def test_bundle_predicts_in_a_new_process(synthetic_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (215, 40, 40)).save(image)
    result = run_cli("predict", str(synthetic_run / "bundle"), "--image", str(image),
                     "--text", "apple anchor the photo", "--image", "-", "--text",
                     "bridge basket some", "--image", str(image), "--text", "-", "-q")
    rows = json.loads(result.stdout)["predictions"]
    assert len(rows) == 3
    names = json.loads((synthetic_run / "report" / "metrics.json").read_text())["class_names"]
    for row in rows:
        assert row["label"] in names
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-6
    assert rows[1]["experts"]["image"] == {"available": False}
    assert rows[2]["experts"]["text"] == {"available": False}
    assert result.stderr == ""

