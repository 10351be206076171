"""The fusion-quality benchmark runs end to end in --quick mode (numbers not checked)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, benchmark_script
          ) -> tuple[ModuleType, dict[str, Any], Path]:
    """One ``--quick`` run shared by the tests below: the module, its result, the JSON."""
    module = benchmark_script("fusion_quality")
    out = tmp_path_factory.mktemp("fusion_quality") / "results" / "fusion_quality.json"
    return module, module.main(["--quick", "--bootstrap", "50", "--out", str(out)]), out


def test_fusion_quality_quick_scores_every_combiner_baseline_and_oracle(quick) -> None:
    from ensemble.combiners import list_combiners

    module, returned, out = quick
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert set(written["datasets"]) == {"quick", "quick_complementary"}
    assert written["skipped"] == {}
    assert written["combiners"] == list_combiners()

    baselines = set(module.BASELINES)
    for section in written["datasets"].values():
        assert section["errors"] == {}
        rows = {row["model"]: row for row in section["models"]}
        assert set(rows) == set(list_combiners()) | baselines | {module.ORACLE}
        assert {n for n, r in rows.items() if r["kind"] == "baseline"} == baselines
        assert section["best_expert"] in section["experts"]

        best, oracle = section["best_expert_accuracy"], section["oracle_accuracy"]
        assert 0.0 <= best <= oracle <= 1.0
        assert rows[module.ORACLE]["accuracy"]["value"] == oracle
        assert rows[module.BEST_EXPERT]["accuracy"]["value"] == best
        assert oracle > best  # the simulated experts are complementary
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


def test_availability_table_has_one_row_per_pattern(quick) -> None:
    module, written, _ = quick
    models = {row["model"] for row in written["datasets"]["quick"]["models"]} - {module.ORACLE}

    quick = written["datasets"]["quick"]  # two experts, every test row complete
    assert quick["test_rows_missing_an_expert"] == 0
    assert [row["pattern"] for row in quick["availability"]] == ["a + b", "a only", "b only"]

    three = written["datasets"]["quick_complementary"]  # three experts, some rows missing one
    assert three["test_rows_missing_an_expert"] > 0
    table = three["availability"]
    assert [row["pattern"] for row in table] == [
        module.AS_IS, "e0 + e1 + e2", "e0 + e1", "e0 + e2", "e1 + e2",
        "e0 only", "e1 only", "e2 only"]
    assert [row["as_is"] for row in table] == [True] + [False] * 7
    assert table[0]["n"] == three["n_test"]
    assert table[0]["experts"] == three["experts"]

    for row in quick["availability"] + table:
        assert row["n"] > 0
        assert set(row["accuracy"]) == models
        assert set(row["versus_best_expert_present"]) == models
        reference = row["best_expert_present_accuracy"]
        if not row["as_is"]:
            assert row["best_expert_present"] in row["experts"]
        for model, versus in row["versus_best_expert_present"].items():
            difference = versus["difference"]
            assert math.isclose(difference["value"], row["accuracy"][model] - reference,
                                abs_tol=1e-9)
            assert difference["low"] <= difference["value"] <= difference["high"]
            assert versus["significantly_below"] == (difference["high"] < 0)
        if len(row["experts"]) == 1 and not row["as_is"]:  # nothing to fuse: the expert itself
            assert row["accuracy"][module.AVERAGE] == reference
            assert row["accuracy"][module.BEST_EXPERT] == reference
    full = next(row for row in table if row["pattern"] == "e0 + e1 + e2")
    pair = next(row for row in table if row["pattern"] == "e0 + e1")
    assert 0 < full["n"] < pair["n"] < three["n_test"]  # masked down: more rows have a pair

    text = module.markdown(written)
    assert text.count("| as is |") == 1 and "### quick_complementary" in text


def _save_split(run_dir: Path, split: str, logits, y: np.ndarray) -> None:
    directory = run_dir / "logits" / split
    logits.save(directory / "logits")
    labels = [logits.class_names[k] for k in y]
    (directory / "labels.json").write_text(json.dumps({"ids": list(logits.ids),
                                                       "labels": labels}))


def test_emoji_datasets_from_a_run_directory(tmp_path: Path, benchmark_script) -> None:
    module = benchmark_script("fusion_quality")
    run_dir = tmp_path / "run"
    _save_split(run_dir, "out_of_fold", *module.make_quick_split(120, 0))
    _save_split(run_dir, "test", *module.make_quick_split(80, 1))
    written = module.main(["--datasets", "emoji", "emoji_few_rows", "--run-dir", str(run_dir),
                           "--few-rows-k", "2", "5", "--methods", "voting",
                           "--bootstrap", "20", "--out", str(tmp_path / "out.json")])
    assert list(written["datasets"]) == ["emoji", "emoji_k2", "emoji_k5"]
    emoji, k5 = written["datasets"]["emoji"], written["datasets"]["emoji_k5"]
    assert emoji["fit_split"] == "out_of_fold" and emoji["n_fit"] == 120
    assert k5["n_fit"] == 5 * 4 and k5["n_test"] == emoji["n_test"] == 80
    assert written["datasets"]["emoji_k2"]["n_fit"] == 2 * 4

    missing = module.main(["--datasets", "emoji", "emoji_few_rows",
                           "--run-dir", str(tmp_path / "absent"),
                           "--out", str(tmp_path / "none.json")])
    assert missing["datasets"] == {}
    assert set(missing["skipped"]) == {"emoji", "emoji_few_rows"}


def test_few_rows_is_stratified_and_seeded(benchmark_script) -> None:
    module = benchmark_script("fusion_quality")
    logits, y = module.make_quick_split(200, 0)
    subset, y_subset = module.few_rows(logits, y, 3, seed=0)
    assert np.bincount(y_subset).tolist() == [3, 3, 3, 3]
    again, _ = module.few_rows(logits, y, 3, seed=0)
    other, _ = module.few_rows(logits, y, 3, seed=1)
    assert list(again.ids) == list(subset.ids) != list(other.ids)
    position = {ident: i for i, ident in enumerate(logits.ids)}
    pairs = zip(subset.ids, y_subset, strict=True)
    assert all(y[position[ident]] == label for ident, label in pairs)


def test_emoji_fine_pairs_a_run_with_a_coarse_category_expert(
        tmp_path: Path, benchmark_script, monkeypatch: pytest.MonkeyPatch) -> None:
    """``emoji_fine``: the image logits of a subcategory run plus an expert that reads only
    the coarse group, fitted on the validation split."""
    import datasets

    import ensemble.data

    module = benchmark_script("fusion_quality")
    fine = ["a1", "a2", "b1", "b2"]
    group = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    features = datasets.Features({"id": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=fine),
                                  "category": datasets.Value("string")})
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 40), ("validation", 16), ("test", 12)):
        y = rng.integers(0, 4, n)
        splits[split] = datasets.Dataset.from_dict(
            {"id": [f"{split}-{i}" for i in range(n)], "label": y.tolist(),
             "category": [group[fine[k]] for k in y]}, features=features)
        if split != "train":
            logits, _ = module.make_quick_split(n, 0)
            image = type(logits)({"image": logits.logits["a"]}, fine,
                                 ids=splits[split]["id"], features={"image": logits.features["a"]})
            image.save(tmp_path / "run" / "logits" / split)
    monkeypatch.setattr(ensemble.data, "load_emoji",
                        lambda **kwargs: datasets.DatasetDict(splits))
    written = module.main(["--datasets", "emoji_fine", "--fine-run-dir", str(tmp_path / "run"),
                           "--methods", "voting", "--bootstrap", "20",
                           "--out", str(tmp_path / "out.json")])
    section = written["datasets"]["emoji_fine"]
    assert section["fit_split"] == "validation" and section["n_fit"] == 16
    assert section["n_test"] == 12
    assert "category" in json.dumps(section) and "image" in json.dumps(section)
    absent = module.main(["--datasets", "emoji_fine", "--fine-run-dir", str(tmp_path / "none"),
                          "--out", str(tmp_path / "none.json")])
    assert "finetune_emoji.py --label subcategory" in absent["skipped"]["emoji_fine"]
