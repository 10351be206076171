"""The inference-overhead benchmark runs end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("onnx", [
    pytest.param(False, id="torch"),
    pytest.param(True, id="onnx", marks=pytest.mark.export),
])
def test_predict_overhead_quick_times_every_contender_and_fills_the_doc(
    tmp_path: Path, benchmark_script, onnx: bool
) -> None:
    module = benchmark_script("predict_overhead")
    out = tmp_path / "predict_overhead.json"
    doc = tmp_path / "benchmarks.md"
    doc.write_text("intro\n<!-- predict_overhead:begin -->\nold\n<!-- predict_overhead:end -->\n"
                   "outro\n")
    returned = module.main(["--quick", "--rounds", "1", "--out", str(out), "--doc", str(doc),
                            "--onnx" if onnx else "--no-onnx"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))

    throughput = written["throughput"]
    assert bool(written["onnx"]) == onnx
    contenders = {module.ONNX_PREDICT, module.ONNX_INT8, module.ONNX_LIMIT} if onnx else set()
    assert set(throughput) == {module.PREDICT, module.LIMIT, module.PREP_IMAGE,
                               module.PREP_TEXT} | contenders
    if onnx:
        fp32 = written["onnx"]["agreement_with_torch"]["fp32"]
        assert fp32["argmax_agreement"]["fused"] == 1.0 and fp32["max_abs_proba_diff"] < 1e-4
        assert written["onnx"]["ratio_to_torch_predict"][module.ONNX_PREDICT] > 0
        assert module.ONE_ONNX in written["latency_ms"]
        assert "ONNX Runtime contender" in doc.read_text()
    assert throughput[module.LIMIT]["ratio_to_limit"] == 1.0
    assert all(row["rows_per_second"] > 0 for row in throughput.values())
    assert throughput[module.PREDICT]["ratio_to_limit_plus_preprocessing"] > 0
    assert written["target"]["ratio"] == throughput[module.PREDICT]["ratio_to_limit"]
    assert all(row["p50"] > 0 and row["p95"] >= row["p50"]
               for row in written["latency_ms"].values())

    experiments = {row["name"]: row for row in written["experiments"]}
    assert experiments[module.DEFAULT]["ratio_to_default"] == 1.0
    assert {"bf16 autocast", "NCHW image model"} <= set(experiments)
    for row in experiments.values():
        assert set(row["argmax_agreement"]) == {"image", "text", "fused"}
        assert all(0.0 <= v <= 1.0 for v in row["argmax_agreement"].values())
        assert all(v >= 0.0 for v in row["max_abs_logit_diff"].values())
    assert experiments["NCHW image model"]["argmax_agreement"]["fused"] == 1.0
    assert written["compile"]["works"] is None  # skipped in --quick
    assert len(written["tokenizer_ms_per_row"]) == 3
    assert len(written["machine"]["load_average_before"]) == 3

    text = doc.read_text()
    assert text.startswith("intro\n<!-- predict_overhead:begin -->\n| contender |")
    assert text.endswith("<!-- predict_overhead:end -->\noutro\n") and "old" not in text
