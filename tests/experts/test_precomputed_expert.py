"""``PrecomputedExpert`` (kind ``precomputed``): scores from a table keyed by id, or from a
column of score vectors; coverage, label space, validity, leakage and persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset

from ensemble import FusionPredictor
from ensemble.combiners import create_combiner
from ensemble.exceptions import ClassMismatchError, ConfigError, DataError, LeakageError
from ensemble.experts import PrecomputedExpert, create_expert, load_expert
from ensemble.labels import log_softmax
from ensemble.logits import LogitSet

CLASSES = ["cat", "dog", "fox"]
IDS = [f"ex-{i}" for i in range(8)]
RNG = np.random.default_rng(0)
PROBA = RNG.dirichlet([1.0, 1.0, 1.0], len(IDS))
LOGITS = RNG.normal(size=(len(IDS), 3))


def _labels(ids: list[str]) -> list[str]:
    return [CLASSES[int(i.rsplit("-", 1)[1]) % 3] for i in ids]


def _dataset(ids: list[str] = IDS) -> Dataset:
    return Dataset.from_dict({"id": ids, "label": _labels(ids)})


def _table(folder: Path, name: str, values: Any, *, ids: list[str] = IDS,
           columns: list[str] = CLASSES, id_column: str = "id") -> str:
    frame = pd.DataFrame(np.asarray(values), columns=columns)
    frame.insert(0, id_column, ids)
    path = folder / name
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def _expert(path: str, **options: Any) -> PrecomputedExpert:
    expert = create_expert("precomputed", path=path, labels=CLASSES, **options)
    assert isinstance(expert, PrecomputedExpert)
    return expert


# -- tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_probability_table_becomes_log_probabilities(suffix: str, tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, f"scores{suffix}", PROBA)).fit(_dataset())
    assert expert.column == "id" and expert.modality == "scores"
    np.testing.assert_allclose(np.exp(expert.predict_logits(_dataset())), PROBA, atol=1e-6)
    np.testing.assert_array_equal(expert.present_rows(_dataset()), True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_logit_table_is_read_as_is(suffix: str, tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, f"logits{suffix}", LOGITS), scores="logits")
    np.testing.assert_allclose(expert.predict_logits(_dataset()), LOGITS, atol=1e-6)


def test_rows_follow_the_dataset_ids_and_columns_the_class_names(tmp_path: Path) -> None:
    order = [2, 0, 1]
    path = _table(tmp_path, "shuffled.csv", PROBA[::-1][:, order], ids=IDS[::-1],
                  columns=[CLASSES[k] for k in order])
    np.testing.assert_allclose(np.exp(_expert(path).predict_logits(_dataset())), PROBA,
                               atol=1e-6)


def test_missing_ids_are_an_error_naming_them(tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, "scores.csv", PROBA[:6], ids=IDS[:6]))
    with pytest.raises(DataError, match=r"no scores for 2 example id\(s\).*\['ex-6', 'ex-7'\]"
                                        r".*on_missing='mask'"):
        expert.fit(_dataset())


def test_missing_ids_are_masked_on_request(tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, "scores.csv", PROBA[:6], ids=IDS[:6]),
                     on_missing="mask").fit(_dataset())
    np.testing.assert_array_equal(expert.present_rows(_dataset()), [True] * 6 + [False] * 2)
    logits = LogitSet.from_experts({"vendor": expert}, _dataset(), split="validation")
    np.testing.assert_array_equal(logits.present("vendor"), [True] * 6 + [False] * 2)
    np.testing.assert_array_equal(logits.logits["vendor"][6:], 0.0)


def test_ids_in_no_split_are_an_error(tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, "scores.csv", PROBA))
    expert.check_ids(IDS)
    with pytest.raises(DataError, match=r"2 id\(s\) that are in no split.*\['ex-6', 'ex-7'\]"):
        expert.check_ids(IDS[:6])


@pytest.mark.parametrize(("columns", "message"), [
    (["cat", "dog", "wolf"], r"no column for class\(es\) \['fox'\].*unexpected columns: "
                             r"\['wolf'\]"),
    (["cat", "dog"], r"no column for class\(es\) \['fox'\]"),
    (["cat", "dog", "fox", "wolf"], r"columns \['wolf'\] that are not classes"),
])
def test_other_class_columns_are_a_class_mismatch(columns: list[str], message: str,
                                                  tmp_path: Path) -> None:
    values = RNG.dirichlet(np.ones(len(columns)), len(IDS))
    with pytest.raises(ClassMismatchError, match=message):
        _expert(_table(tmp_path, "scores.csv", values, columns=columns)).fit(_dataset())


def test_nan_scores_are_an_error_naming_the_id(tmp_path: Path) -> None:
    values = PROBA.copy()
    values[3, 1] = np.nan
    with pytest.raises(DataError, match=r"id 'ex-3' in .*scores\.csv hold NaN"):
        _expert(_table(tmp_path, "scores.csv", values)).fit(_dataset())


def test_probabilities_that_do_not_sum_to_one_suggest_logits(tmp_path: Path) -> None:
    path = _table(tmp_path, "scores.csv", LOGITS)
    with pytest.raises(DataError, match=r"id 'ex-0' .* do not form a distribution.*"
                                        r"scores='logits'"):
        _expert(path).fit(_dataset())
    np.testing.assert_allclose(_expert(path, scores="logits").predict_logits(_dataset()),
                               LOGITS, atol=1e-6)


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    ids = [*IDS[:7], IDS[2]]
    with pytest.raises(DataError, match=r"id 'ex-2' appears twice \(row 7\)"):
        _expert(_table(tmp_path, "scores.csv", PROBA, ids=ids)).fit(_dataset())


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"scores": "logit"}, ConfigError, r"scores is 'logit'; choose"),
    ({"on_missing": "skip"}, ConfigError, r"on_missing is 'skip'; choose"),
    ({"id_column": "key"}, DataError, r"no id column 'key'.*pass id_column="),
])
def test_bad_options_are_refused(options: dict[str, str], error: type[Exception], message: str,
                                 tmp_path: Path) -> None:
    with pytest.raises(error, match=message):
        _expert(_table(tmp_path, "scores.csv", PROBA), **options).fit(_dataset())


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv' does not exist"):
        _expert(str(tmp_path / "nope.csv")).fit(_dataset())


def test_ids_read_from_another_column(tmp_path: Path) -> None:
    path = _table(tmp_path, "scores.csv", PROBA, ids=[f"k{i}" for i in range(8)],
                  id_column="key")
    dataset = _dataset().add_column("key", [f"k{i}" for i in range(8)])
    expert = _expert(path, column="key", id_column="key").fit(dataset)
    np.testing.assert_allclose(np.exp(expert.predict_logits(dataset)), PROBA, atol=1e-6)


# -- leakage --------------------------------------------------------------------------------


def test_train_ids_make_logits_on_those_rows_in_sample(tmp_path: Path) -> None:
    expert = _expert(_table(tmp_path, "scores.csv", PROBA), train_ids=IDS[:3])
    logits = LogitSet.from_experts({"vendor": expert}, _dataset(), split="validation")
    with pytest.raises(LeakageError, match=r"\['vendor'\]"):
        logits.check_held_out()
    held_out = LogitSet.from_experts({"vendor": expert}, _dataset(IDS[3:]), split="test")
    held_out.check_held_out()


def test_train_ids_from_a_file_and_through_another_id_column(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(8)]
    (tmp_path / "train_ids.txt").write_text("k0\nk1\n")
    expert = _expert(_table(tmp_path, "scores.csv", PROBA, ids=keys, id_column="key"),
                     column="key", id_column="key", train_ids=str(tmp_path / "train_ids.txt"))
    dataset = _dataset().add_column("key", keys)
    with pytest.raises(LeakageError):
        LogitSet.from_experts({"vendor": expert}, dataset, split="validation").check_held_out()


# -- a column of score vectors ---------------------------------------------------------------


def _vectors() -> Dataset:
    vectors: list[list[float] | None] = [list(p) for p in PROBA[:-1]]
    return _dataset().add_column("vendor", [*vectors, None])


def test_a_column_of_score_vectors(tmp_path: Path) -> None:
    expert = create_expert("precomputed", column="vendor", labels=CLASSES).fit(_vectors())
    logits = expert.predict_logits(_vectors())
    np.testing.assert_allclose(np.exp(logits[:-1]), PROBA[:-1], atol=1e-6)
    np.testing.assert_array_equal(logits[-1], 0.0)
    np.testing.assert_array_equal(expert.present_rows(_vectors()), [True] * 7 + [False])
    as_logits = create_expert("precomputed", column="vendor", labels=CLASSES, scores="logits")
    np.testing.assert_allclose(as_logits.predict_logits([list(LOGITS[0])]), LOGITS[:1],
                               atol=1e-6)


@pytest.mark.parametrize(("value", "error", "message"), [
    ([0.5, 0.5], ClassMismatchError, r"another length than the 3 classes"),
    ("0.2,0.3,0.5", DataError, r"row 0 of column 'vendor' is '0\.2,0\.3,0\.5'"),
    ([0.2, float("nan"), 0.8], DataError, r"row 0 of column 'vendor'.* hold NaN"),
])
def test_bad_score_vectors_are_refused(value: Any, error: type[Exception],
                                       message: str) -> None:
    expert = create_expert("precomputed", column="vendor", labels=CLASSES)
    with pytest.raises(error, match=message):
        expert.predict_logits([value])


# -- persistence ----------------------------------------------------------------------------


def test_save_and_load_keep_the_table_and_train_ids(tmp_path: Path) -> None:
    path = _table(tmp_path, "scores.parquet", PROBA)
    expert = _expert(path, train_ids=IDS[:2]).fit(_dataset())
    folder = expert.save_pretrained(tmp_path / "vendor")
    Path(path).unlink()  # the folder holds its own copy of the scores
    again = load_expert(folder)
    assert isinstance(again, PrecomputedExpert) and again.scores == "probabilities"
    assert again.fingerprint() == expert.fingerprint()
    np.testing.assert_array_equal(again.predict_logits(_dataset()),
                                  expert.predict_logits(_dataset()))
    with pytest.raises(LeakageError):
        LogitSet.from_experts({"vendor": again}, _dataset(), split="validation").check_held_out()


def test_a_vector_expert_saves_and_loads(tmp_path: Path) -> None:
    expert = create_expert("precomputed", column="vendor", labels=CLASSES).fit(_vectors())
    again = load_expert(expert.save_pretrained(tmp_path / "vendor"))
    np.testing.assert_array_equal(again.predict_logits(_vectors()),
                                  expert.predict_logits(_vectors()))


def test_a_bundle_with_a_table_expert_round_trips(tmp_path: Path) -> None:
    ids = [f"ex-{i}" for i in range(60)]
    labels = np.array([i % 3 for i in range(60)])
    proba = np.full((60, 3), 0.2)
    proba[np.arange(60), labels] = 0.6
    path = _table(tmp_path, "scores.csv", proba, ids=ids)
    expert = _expert(path, on_missing="mask")
    vectors = Dataset.from_dict({"id": ids, "label": _labels(ids),
                                 "vendor": list(log_softmax(3.0 * np.eye(3)[labels]))})
    experts = {"table": expert, "vectors": create_expert(
        "precomputed", column="vendor", labels=CLASSES, scores="logits")}
    held_out = LogitSet.from_experts(experts, vectors, split="validation")
    combiner = create_combiner("voting").fit(held_out, labels)
    predictor = FusionPredictor(experts, combiner)
    Path(path).unlink()
    loaded = FusionPredictor.load(predictor.save(tmp_path / "bundle"))
    inputs = {"id": ["ex-1", "nobody"], "vendor": [None, [0.0, 0.0, 5.0]]}
    np.testing.assert_allclose(loaded.predict_proba(inputs), predictor.predict_proba(inputs),
                               rtol=0, atol=1e-7)
    assert loaded.predict(inputs).tolist() == ["dog", "fox"]
