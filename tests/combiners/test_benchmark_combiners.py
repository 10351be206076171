"""The combiner benchmark runs on a tiny grid and writes valid JSON (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "combiners.py"


def test_quick_benchmark_writes_json(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_combiners", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    output = tmp_path / "results" / "combiners.json"
    assert module.main(["--quick", "--output", str(output)]) == 0
    data = json.loads(output.read_text())
    assert data["quick"] is True
    methods = {row["method"] for row in data["results"]}
    assert "sklearn LogisticRegression" in methods and "gating" in methods
    assert "| method |" in capsys.readouterr().out
