"""The fine-tuning benchmark scripts run end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

Script = Callable[[str], ModuleType]


def test_finetune_emoji_quick_fits_both_experts_and_writes_logits(
    tmp_path: Path, benchmark_script: Script
) -> None:
    out = tmp_path / "finetune.json"
    results = benchmark_script("finetune_emoji").main(
        ["--quick", "--no-progress", "--run-dir", str(tmp_path / "run"), "--out", str(out)]
    )
    written = json.loads(out.with_name("finetune_quick.json").read_text())
    assert written == json.loads(json.dumps(results))
    for modality in ("image", "text"):
        row = written["experts"][modality]
        assert row["epochs_run"] >= 1 and 0.0 <= row["test_accuracy"] <= 1.0
        assert (tmp_path / "run" / f"{modality}-expert" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "logits" / "test" / "logits.safetensors").is_file()
    assert written["test_oracle_accuracy"] >= max(
        written["experts"][m]["test_accuracy"] for m in ("image", "text"))


@pytest.mark.parametrize(
    "contender", [pytest.param("trainer", marks=pytest.mark.slow), "raw", "ours"])
def test_train_overhead_contenders_train_the_full_modes_text_model(
    contender: str, benchmark_script: Script, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, one contender of --quick on the text expert: the same mean-pooling model
    class as all-MiniLM-L6-v2 in the full mode, whose outputs carry no loss."""
    bench = benchmark_script("train_overhead")
    bench.main(["--worker", "--quick", "--expert", "text", "--contender", contender,
                "--rows", "16", "--batch-size", "8"])
    sample = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sample["model"] == bench.MODEL_CLASSES["text"] == "MeanPoolingClassifier"
    assert sample["samples_per_second"] > 0


@pytest.mark.parametrize("contender", ["raw", "ours"])
def test_train_overhead_trains_the_audio_expert(
    contender: str, benchmark_script: Script, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, one contender of --quick on the audio expert (a wav2vec2 from config)."""
    bench = benchmark_script("train_overhead")
    bench.main(["--worker", "--quick", "--expert", "audio", "--contender", contender,
                "--rows", "12", "--batch-size", "4"])
    sample = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sample["model"] == bench.MODEL_CLASSES["audio"] == "Wav2Vec2ForSequenceClassification"
    assert sample["samples_per_second"] > 0


@pytest.mark.slow
def test_train_overhead_quick_compares_every_contender(
    tmp_path: Path, benchmark_script: Script
) -> None:
    out = tmp_path / "overhead.json"
    benchmark_script("train_overhead").main(["--quick", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["models"] == {"image": "EfficientNet", "text": "MeanPoolingClassifier",
                                 "audio": "Wav2Vec2ForSequenceClassification"}
    assert set(written["experts"]["image"]) == {"raw", "ours"}
    assert set(written["experts"]["text"]) == {"raw", "ours", "trainer"}
    assert set(written["experts"]["audio"]) == {"raw", "ours"}
    for summary in written["experts"].values():
        assert summary["raw"]["ratio_to_raw"] == 1.0
        assert all(row["samples_per_second"] > 0 for row in summary.values())
    assert written["experts"]["text"]["ours"]["ratio_to_trainer"] > 0
    assert set(written["load_average"]) == {"start", "end"}
