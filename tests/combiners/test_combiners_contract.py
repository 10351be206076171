"""The combiner contract, checked for every registered combiner."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.base import clone

from ensemble.combiners import get_combiner_class, list_combiners, load_combiner
from ensemble.exceptions import (
    ClassMismatchError,
    LeakageError,
    ModalityError,
    NotFittedError,
)
from ensemble.logits import LogitSet, Provenance

ALL = list_combiners()


@pytest.fixture(scope="module")
def fitted(small_set, combiner_factory):
    logits, y = small_set
    return {name: combiner_factory(name).fit(logits, y) for name in ALL}


def test_registry_lists_every_combiner() -> None:
    assert {"voting", "stacking", "gating", "selection", "feature_stacking"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_fit_returns_self_and_sets_fitted_attributes(name, small_set, combiner_factory) -> None:
    logits, y = small_set
    combiner = combiner_factory(name)
    assert combiner.fit(logits, y) is combiner
    assert combiner.expert_names_ == logits.expert_names
    assert combiner.class_names_ == logits.class_names
    np.testing.assert_array_equal(combiner.classes_, np.arange(logits.n_classes))


@pytest.mark.parametrize("name", ALL)
def test_clone_and_get_params(name, combiner_factory) -> None:
    combiner = combiner_factory(name)
    copy = clone(combiner)
    assert type(copy) is type(combiner)
    assert copy.get_params() == combiner.get_params()
    assert not hasattr(copy, "expert_names_")


@pytest.mark.parametrize("name", ALL)
def test_predict_before_fit_raises_not_fitted(name, small_set, combiner_factory) -> None:
    logits, _ = small_set
    with pytest.raises(NotFittedError, match="not fitted") as info:
        combiner_factory(name).predict_proba(logits)
    assert isinstance(info.value, sklearn.exceptions.NotFittedError)
    with pytest.raises(NotFittedError):
        combiner_factory(name).save("unused")


@pytest.mark.parametrize("name", ALL)
def test_probabilities_are_normalised(name, fitted, small_set) -> None:
    logits, _ = small_set
    combiner = fitted[name]
    proba = combiner.predict_proba(logits)
    assert proba.shape == (logits.n_rows, logits.n_classes)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.exp(combiner.predict_logits(logits)), proba)
    assert set(combiner.predict(logits)) <= set(range(logits.n_classes))


@pytest.mark.parametrize("name", ALL)
def test_chunked_prediction_matches_one_pass(name, fitted, small_set, monkeypatch) -> None:
    logits, _ = small_set
    combiner = fitted[name]
    if combiner._predict_chunk_rows is None:
        pytest.skip(f"{name} predicts all rows at once")
    mask = np.ones((logits.n_rows, len(logits.expert_names)), dtype=bool)
    mask[::4, 1] = False
    monkeypatch.setattr(type(combiner), "_predict_chunk_rows", None)
    whole = combiner.predict_logits(logits, mask=mask)
    monkeypatch.setattr(type(combiner), "_predict_chunk_rows", 7)
    # float32 matmuls may round differently for other batch sizes (a gate reading features)
    np.testing.assert_allclose(combiner.predict_logits(logits, mask=mask), whole, atol=1e-6,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_missing_rows_and_all_missing_rows(name, fitted, small_set) -> None:
    logits, _ = small_set
    mask = np.ones((logits.n_rows, len(logits.expert_names)), dtype=bool)
    mask[::3, 0] = False
    mask[1::3, 1:] = False
    mask[2] = False
    proba = fitted[name].predict_proba(logits, mask=mask)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(proba[2], 1.0 / logits.n_classes)


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name, fitted, small_set, tmp_path) -> None:
    logits, _ = small_set
    combiner = fitted[name]
    combiner.save(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir() if p.is_file()) == [
        "config.json", "model.safetensors"
    ]
    for loaded in (load_combiner(tmp_path / name), get_combiner_class(name).load(tmp_path / name)):
        assert type(loaded) is type(combiner)
        np.testing.assert_array_equal(loaded.predict_proba(logits), combiner.predict_proba(logits))
        assert loaded.expert_names_ == combiner.expert_names_


@pytest.mark.parametrize("name", ALL)
def test_string_labels_give_class_names(name, small_set, combiner_factory) -> None:
    logits, y = small_set
    names = np.asarray(logits.class_names)[y]
    combiner = combiner_factory(name).fit(logits, names)
    assert set(combiner.predict(logits)) <= set(logits.class_names)
    assert combiner.score(logits, names) > 0.5


@pytest.mark.parametrize("name", ALL)
def test_wrong_modalities_are_named(name, fitted, small_set) -> None:
    logits, _ = small_set
    with pytest.raises(ModalityError, match=r"missing \['audio'\]"):
        fitted[name].predict_proba(logits.select(["image", "text"]))
    renamed = dict(logits.logits)
    renamed["video"] = renamed.pop("audio")
    with pytest.raises(ModalityError, match=r"unexpected \['video'\]"):
        fitted[name].predict_proba(renamed)


@pytest.mark.parametrize("name", ["voting", "stacking", "gating", "selection"])
def test_modality_order_and_class_order_are_realigned(name, fitted, small_set) -> None:
    logits, _ = small_set
    combiner = fitted[name]
    expected = combiner.predict_proba(logits)
    reordered = logits.select(["audio", "image", "text"])
    np.testing.assert_allclose(combiner.predict_proba(reordered), expected, atol=1e-6)
    permuted = logits.align(class_names=list(reversed(logits.class_names)))
    np.testing.assert_allclose(combiner.predict_proba(permuted), expected, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_different_class_set_raises(name, fitted, small_set) -> None:
    logits, _ = small_set
    other = LogitSet(dict(logits.logits), [f"other_{i}" for i in range(logits.n_classes)],
                     features=logits.features)
    with pytest.raises(ClassMismatchError, match="missing"):
        fitted[name].predict_proba(other)
    narrow = {m: a[:, :4] for m, a in logits.logits.items()}
    with pytest.raises(ClassMismatchError, match="4 columns"):
        fitted[name].predict_proba(narrow)


@pytest.mark.parametrize("name", ALL)
def test_leakage_guard(name, small_set, combiner_factory) -> None:
    logits, y = small_set
    leaked = LogitSet(
        dict(logits.logits), logits.class_names, features=logits.features,
        provenance={"image": Provenance(split="train", dataset_fingerprint="abc",
                                        trained_on=("abc",))},
    )
    with pytest.raises(LeakageError, match="image"):
        combiner_factory(name).fit(leaked, y)
    combiner_factory(name).fit(leaked.allow_leakage(), y)


@pytest.mark.parametrize("name", ALL)
def test_calibrate_option(name, small_set, combiner_factory) -> None:
    logits, y = small_set
    combiner = combiner_factory(name, calibrate=True).fit(logits, y)
    assert combiner.temperatures_.shape == (3,)
    assert not np.allclose(combiner.temperatures_, 1.0)
    np.testing.assert_allclose(combiner.predict_proba(logits).sum(axis=1), 1.0, atol=1e-9)
