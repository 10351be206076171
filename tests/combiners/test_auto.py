"""The auto combiner: what it cross-validates, what it picks, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ensemble.combiners import AutoCombiner, load_combiner
from ensemble.exceptions import ConfigError

SIMPLE = ("experts", "average", "voting")


def _by_name(auto: AutoCombiner) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in auto.cv_results_}


def test_auto_keeps_the_best_cross_validated_candidate_and_says_why(make: Any) -> None:
    logits, y = make(600, seed=3)
    auto = AutoCombiner(cv=3, choices=(*SIMPLE, "sklearn_stacking", "stacking")).fit(logits, y)
    rows = _by_name(auto)
    assert set(rows) == {"expert:image", "expert:text", "expert:audio", "average", "voting",
                         "sklearn_stacking", "stacking"}
    assert [r["name"] for r in auto.cv_results_ if r["chosen"]] == [auto.chosen_]
    best = max(r["accuracy"] for r in rows.values())
    # never worse, on the fit data's CV, than the best expert, averaging, sklearn's stacker
    assert rows[auto.chosen_]["accuracy"] == best
    assert all(r["correct"] == round(r["accuracy"] * y.size) for r in rows.values())
    assert auto.chosen_ == "stacking"  # complementary experts: a fitted combiner wins here
    summary = auto.summary()
    assert summary["chose"] == "stacking" and "3-fold CV accuracy" in summary["why"]
    assert "best expert" in summary["why"] and "average" in summary["why"]
    np.testing.assert_allclose(auto.predict_logits(logits),
                               auto.chosen_combiner_.predict_logits(logits))


def test_with_few_rows_per_class_the_simple_combiners_win(make: Any) -> None:
    logits, y = make(3000, seed=4)
    rows = np.concatenate([np.flatnonzero(y == c)[:4] for c in np.unique(y)])
    few, y_few = logits.subset(rows), y[rows]
    auto = AutoCombiner().fit(few, y_few)
    assert auto.cv_ == 4  # folds shrink to the largest class
    assert auto.chosen_ in {"average", "voting"} or auto.chosen_.startswith("expert:"), (
        auto.chosen_, auto.cv_results_)


def test_ties_go_to_the_simpler_candidate_and_nll_breaks_accuracy_ties(make: Any) -> None:
    logits, y = make(300, seed=5)
    auto = AutoCombiner(cv=3, choices=("average", "voting")).fit(logits, y)
    rows = _by_name(auto)
    if rows["average"]["accuracy"] == rows["voting"]["accuracy"]:
        expected = min(("average", "voting"), key=lambda n: (rows[n]["nll"], n != "average"))
    else:
        expected = max(rows, key=lambda n: rows[n]["accuracy"])
    assert auto.chosen_ == expected
    by_nll = AutoCombiner(cv=3, choices=("average", "voting"), metric="nll").fit(logits, y)
    assert by_nll.chosen_ == min(rows, key=lambda n: rows[n]["nll"])


def test_the_choice_and_its_table_survive_save_and_load(make: Any, tmp_path: Path) -> None:
    logits, y = make(300, seed=6)
    auto = AutoCombiner(cv=3, choices=("average", "stacking")).fit(logits, y)
    auto.save(tmp_path / "auto")
    loaded = load_combiner(tmp_path / "auto")
    assert loaded.chosen_ == auto.chosen_
    assert [r["name"] for r in loaded.cv_results_] == ["average", "stacking"]
    np.testing.assert_allclose(loaded.predict_proba(logits), auto.predict_proba(logits),
                               atol=1e-6)


@pytest.mark.parametrize(("params", "message"), [
    ({"cv": 1}, r"cv must be an integer >= 2, got 1"),
    ({"choices": ["average", "stackng"]}, r"auto cannot try \['stackng'\]"),
    ({"choices": ["auto"]}, r"auto cannot try \['auto'\]"),
    ({"choices": []}, r"non-empty"),
    ({"metric": "f1"}, r"'f1'"),
])
def test_bad_settings_are_named(params: dict[str, Any], message: str, make: Any) -> None:
    logits, y = make(60, seed=7)
    with pytest.raises(ConfigError, match=message):
        AutoCombiner(**params).fit(logits, y)


def test_too_few_rows_for_the_folds_is_a_clear_error(make: Any) -> None:
    logits, y = make(60, seed=8)
    with pytest.raises(ConfigError, match=r"at least 10 fit rows for 5-fold"):
        AutoCombiner().fit(logits.subset(np.arange(6)), y[:6])
