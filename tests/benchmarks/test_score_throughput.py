"""The score-throughput benchmark runs end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_score_throughput_quick_writes_every_field(tmp_path: Path, benchmark_script) -> None:
    module = benchmark_script("score_throughput")
    out = tmp_path / "results" / "score_throughput_quick.json"
    returned = module.main(["--quick", "--run-dir", str(tmp_path / "run"), "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["benchmark"] == "score_throughput" and written["quick"] is True
    assert {"machine", "setup", "date", "score_peak_rss_growth",
            "predict_peak_rss_growth"} <= set(written)
    assert [row["rows"] for row in written["sizes"]] == [200, 400]
    for row in written["sizes"]:
        assert row["score"]["rows_scored"] == row["rows"]
        assert row["predict"]["rows_scored"] == row["rows"]
        for contender in ("score", "predict"):
            assert {"wall_seconds", "rows_per_second", "peak_rss_bytes"} <= set(row[contender])
        assert "score_vs_predict_rows_per_second" in row
        assert row["score"]["shards"] == row["rows"] // 100
    assert "| rows |" in module.markdown(written)
