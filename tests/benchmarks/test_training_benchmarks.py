"""The fine-tuning benchmark scripts run end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_finetune_emoji_quick_fits_both_experts_and_writes_logits(
    tmp_path: Path, benchmark_script
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


@pytest.mark.slow
def test_train_overhead_quick_compares_every_contender(
    tmp_path: Path, benchmark_script
) -> None:
    out = tmp_path / "overhead.json"
    benchmark_script("train_overhead").main(["--quick", "--out", str(out)])
    written = json.loads(out.read_text())
    assert set(written["experts"]["image"]) == {"raw", "ours"}
    assert set(written["experts"]["text"]) == {"raw", "ours", "trainer"}
    for summary in written["experts"].values():
        assert summary["raw"]["ratio_to_raw"] == 1.0
        assert all(row["samples_per_second"] > 0 for row in summary.values())
    assert written["experts"]["text"]["ours"]["ratio_to_trainer"] > 0
