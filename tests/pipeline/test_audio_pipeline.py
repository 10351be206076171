"""Audio next to text, end to end: a folder of WAV/FLAC clips and csv files, declared as
``inputs: {clip: audio, text: text}``, fine-tuned and fused by ``ensemble run``, predicted by
``ensemble predict`` (by column and from a file) and by a loaded ``FusionPredictor``, with
clips or texts missing."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from _tiny_data import CLASSES, TONES, colour_text

from ensemble import FusionPredictor
from ensemble.cli import main
from ensemble.testing import tone_clip

SPLITS = {"train": 24, "validation": 15, "test": 9}
TRAINING = {"epochs": 5, "learning_rate": 0.003, "head_learning_rate": 0.003,
            "batch_size": 8, "early_stopping_patience": None}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """One torch thread for this module (tests/conftest.py)."""


def _write_calls(root: Path) -> None:
    """``root/clips/*.wav|flac`` and one csv per split: clip path, text, label. Every fifth
    row lacks its clip, every seventh its text (empty cells)."""
    (root / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s, (split, n) in enumerate(SPLITS.items()):
        rows = []
        for i in range(n):
            label = CLASSES[i % 3]
            name = f"clips/{split}-{i}.{'flac' if i % 2 else 'wav'}"
            clip = tone_clip(TONES[label], seconds=float(rng.uniform(0.2, 0.4)),
                             sampling_rate=[16000, 8000, 22050][i % 3], seed=100 * s + i)
            sf.write(root / name, clip["array"], clip["sampling_rate"])
            rows.append({"clip": "" if i % 5 == 4 else name,
                         "text": "" if i % 7 == 6 else colour_text(label, rng),
                         "label": label})
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["clip", "text", "label"])
            writer.writeheader()
            writer.writerows(rows)


def _recipe(audio: Path, text: Path) -> dict:
    return {
        "name": "calls",
        "seed": 0,
        "data": {"source": "multimodal", "options": {
            "path_or_name": "data/calls",
            "data_files": {split: f"{split}.csv" for split in SPLITS},
            "inputs": {"clip": "audio", "text": "text"},
            "label_column": "label",
            "class_names": CLASSES}},
        "experts": {
            "clip": {"type": "transformers-audio", "column": "clip", "checkpoint": str(audio),
                     "options": {"pretrained": False, "max_duration": 0.5},
                     "training": TRAINING},
            "text": {"type": "transformers", "column": "text", "checkpoint": str(text),
                     "options": {"max_length": 16}, "training": TRAINING},
        },
        "combiners": ["voting", "stacking"],
        "evaluation": {"bootstrap": 10, "plots": False},
        "bundle": {"combiner": "stacking"},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_audio_checkpoint: Path,
        tiny_text_checkpoint: Path) -> Iterator[Path]:
    """``ensemble run`` of the audio + text recipe; yields the working directory."""
    work = tmp_path_factory.mktemp("calls")
    _write_calls(work / "data" / "calls")
    (work / "calls.yaml").write_text(yaml.safe_dump(_recipe(tiny_audio_checkpoint,
                                                            tiny_text_checkpoint)))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["run", "calls.yaml", "--run-dir", "runs/calls", "-q"]) == 0
        yield work


def test_the_run_fits_both_experts_and_fuses_them(run: Path) -> None:
    experts = run / "runs" / "calls" / "experts"
    assert json.loads((experts / "clip" / "ensemble.json").read_text())["kind"] == (
        "transformers-audio")
    metrics = json.loads((run / "runs" / "calls" / "report" / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert "clip" in text and "stacking" in text
    predictor = FusionPredictor.load(run / "runs" / "calls" / "bundle")
    assert predictor.columns == {"clip": "audio", "text": "text"}


def test_a_loaded_bundle_predicts_with_either_input_missing(run: Path) -> None:
    predictor = FusionPredictor.load(run / "runs" / "calls" / "bundle")
    clips = run / "data" / "calls" / "clips"
    inputs = {"clip": [str(clips / "test-0.wav"), None, str(clips / "test-2.wav")],
              "text": [None, colour_text("green"), colour_text("blue")]}
    proba = predictor.predict_proba(inputs)
    assert proba.shape == (3, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    rows = predictor.explain(inputs)
    assert rows[1]["experts"]["clip"] == {"available": False}
    assert rows[0]["experts"]["text"] == {"available": False}
    assert predictor.predict(inputs)[0] == "red"  # from the tone alone
    clip = tone_clip(TONES["blue"], seconds=0.3)
    np.testing.assert_allclose(predictor.predict_proba({"clip": [clip], "text": [None]}),
                               predictor.predict_proba([{"clip": clip}]), atol=1e-6)
    bf16 = FusionPredictor.load(run / "runs" / "calls" / "bundle", precision="bf16")
    np.testing.assert_allclose(bf16.predict_proba(inputs), proba, atol=0.05)


def test_the_onnx_export_refuses_the_audio_expert_and_writes_nothing(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run / "onnx"
    assert main(["export", str(run / "runs" / "calls" / "bundle"), "--out", str(out)]) != 0
    error = capsys.readouterr().err
    assert "transformers-audio expert on column 'clip' has no ONNX export" in error
    assert "no audio preprocessing" in error and not out.exists()


def test_the_cli_predicts_by_column_and_from_a_file(run: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle = str(run / "runs" / "calls" / "bundle")
    clip = str(run / "data" / "calls" / "clips" / "test-1.flac")
    capsys.readouterr()
    assert main(["predict", bundle, "-q", "--input", f"clip={clip}", "--input", "text=-",
                 "--input", "clip=-", "--input", "text=a red circle"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert rows[0]["label"] == "green" and rows[0]["input"] == {"clip": clip, "text": None}
    assert rows[1]["experts"]["clip"] == {"available": False}
    data = run / "data" / "calls" / "test.csv"  # relative clip paths: from the file's folder
    out = run / "predictions.csv"
    assert main(["predict", bundle, "-q", "--data", str(data), "--out", str(out)]) == 0
    with out.open() as handle:
        predicted = list(csv.DictReader(handle))
    assert len(predicted) == SPLITS["test"]
    labels = [row["label"] for row in csv.DictReader(data.open())]
    right = sum(p["prediction"] == label for p, label in zip(predicted, labels, strict=True))
    assert right >= SPLITS["test"] - 2
    missing = run / "data" / "calls" / "clips" / "nope.wav"
    assert main(["predict", bundle, "-q", "--input", f"clip={missing}"]) == 4
    assert "nope.wav' of example '0' does not exist" in capsys.readouterr().err
