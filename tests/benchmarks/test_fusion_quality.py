"""The fusion-quality benchmark runs end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def test_fusion_quality_quick_scores_every_combiner_baseline_and_oracle(
    tmp_path: Path, benchmark_script
) -> None:
    from ensemble.combiners import list_combiners

    module = benchmark_script("fusion_quality")
    out = tmp_path / "results" / "fusion_quality.json"
    returned = module.main(["--quick", "--bootstrap", "50", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))

    rows = {row["model"]: row for row in written["models"]}
    baselines = {module.BEST_EXPERT, module.AVERAGE, module.SKLEARN_STACKING}
    assert set(rows) == set(list_combiners()) | baselines | {module.ORACLE}
    assert {n for n, r in rows.items() if r["kind"] == "baseline"} == baselines
    assert written["best_expert"] in written["experts"]

    best, oracle = written["best_expert_accuracy"], written["oracle_accuracy"]
    assert 0.0 <= best <= oracle <= 1.0
    assert rows[module.ORACLE]["accuracy"]["value"] == oracle
    assert rows[module.BEST_EXPERT]["accuracy"]["value"] == best
    assert oracle > best  # the synthetic experts are complementary
    for name, row in rows.items():
        acc = row["accuracy"]["value"]
        assert 0.0 <= row["accuracy"]["low"] <= acc <= row["accuracy"]["high"] <= 1.0
        assert math.isclose(row["gap_closed"], (acc - best) / (oracle - best))
        if name == module.ORACLE:
            continue
        for metric in ("macro_f1", "ece"):
            assert 0.0 <= row[metric]["value"] <= 1.0
            assert row[metric]["low"] <= row[metric]["high"]
        assert row["nll"]["value"] >= 0.0
    assert rows[module.BEST_EXPERT]["gap_closed"] == 0.0
    assert rows[module.ORACLE]["gap_closed"] == 1.0
