"""Behaviour specific to each combiner."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from ensemble.combiners import (
    EnsembleSelection,
    FeatureStacking,
    GatingCombiner,
    StackingCombiner,
    VotingCombiner,
    load_combiner,
)
from ensemble.combiners._math import masked_weights
from ensemble.combiners.selection import _LOSSES, _Trials
from ensemble.exceptions import ArtifactError, InvalidLogitsError
from ensemble.labels import log_softmax
from ensemble.logits import LogitSet

# -- voting ---------------------------------------------------------------------------------


def test_hard_voting_majority_and_tie_break() -> None:
    one_hot = np.log(np.array([[0.6, 0.3, 0.1], [0.1, 0.45, 0.45], [0.2, 0.35, 0.45]]))
    a = np.array([one_hot[0], one_hot[0]])  # votes 0 (p=.6)
    b = np.array([one_hot[1], one_hot[2]])  # votes 1 (tie with 2 -> first max), votes 2
    c = np.array([one_hot[2], one_hot[1]])
    logits = {"a": a, "b": b, "c": c}
    voter = VotingCombiner(method="hard").fit(logits, [0, 1])
    # Row 0: votes a->0, b->1, c->2: a three-way tie, broken by summed probability (class 2).
    # Row 1: a->0, b->2, c->1: also a tie; summed probability favours class 1.
    sums = np.exp(np.stack([a, b, c], 1)).sum(1)
    np.testing.assert_array_equal(voter.predict(logits), sums.argmax(1))
    majority = {"a": a, "b": a, "c": c}
    np.testing.assert_array_equal(voter.predict(majority), [0, 0])


def test_user_and_fitted_weights(train_set) -> None:
    logits, y = train_set
    voter = VotingCombiner(weights={"image": 2.0, "text": 1.0, "audio": 1.0}).fit(logits, y)
    np.testing.assert_allclose(voter.weights_, [0.5, 0.25, 0.25])
    rng = np.random.default_rng(0)
    noisy = dict(logits.logits)
    noisy["audio"] = rng.normal(size=noisy["audio"].shape)
    fitted = VotingCombiner(weights="fit").fit(noisy, y)
    assert fitted.weights_[2] < 0.1
    assert np.isclose(fitted.weights_.sum(), 1.0)


def test_geometric_is_product_of_experts(small_set) -> None:
    logits, y = small_set
    voter = VotingCombiner(method="geometric", pattern_guard=False).fit(logits, y)
    mean = sum(log_softmax(a.astype(np.float64)) for a in logits.logits.values()) / 3
    expected = log_softmax(mean)
    np.testing.assert_allclose(voter.predict_logits(logits), expected, atol=1e-5)


# -- stacking -------------------------------------------------------------------------------


def _documented_layout(logits: LogitSet) -> np.ndarray:
    """Each expert's log-probabilities, then one missing indicator per expert."""
    return np.hstack([log_softmax(logits.logits[m]) for m in logits.expert_names]
                     + [1.0 - np.asarray(logits.mask, dtype=np.float32)]).astype(np.float64)


def test_stacking_matches_sklearn_on_the_same_features(small_set) -> None:
    logits, y = small_set
    converged = LogisticRegression(C=0.5, max_iter=2000, tol=1e-9)
    stacker = StackingCombiner(meta_learner=converged, modality_dropout=0.0).fit(logits, y)
    features = _documented_layout(logits)
    reference = clone(converged).fit(features, y)
    np.testing.assert_allclose(stacker.meta_learner_.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(stacker.predict_proba(logits), reference.predict_proba(features),
                               atol=1e-5)


def test_torch_meta_learner_matches_sklearn_objective(small_set) -> None:
    # structure="full" minimises scikit-learn's multinomial objective at the same C.
    logits, y = small_set
    stacker = StackingCombiner(structure="full", Cs=(0.5,), modality_dropout=0.0,
                               max_iter=500).fit(logits, y)
    features = _documented_layout(logits)
    reference = LogisticRegression(C=0.5, max_iter=2000, tol=1e-9).fit(features, y)
    np.testing.assert_allclose(stacker.predict_proba(logits), reference.predict_proba(features),
                               atol=2e-3)


def test_classwise_stacking_reads_only_each_class_column(small_set, tmp_path) -> None:
    logits, y = small_set
    stacker = StackingCombiner(Cs=(0.1, 10.0), meta_features=("log_proba", "entropy")).fit(
        logits, y)
    model = stacker.meta_learner_
    assert stacker.C_ in (0.1, 10.0)
    assert model.block_coef.shape == (3, logits.n_classes)  # one weight per (expert, class)
    assert model.scalar_coef.shape == (6, logits.n_classes)  # 3 entropies + 3 indicators
    stacker.save(tmp_path / "classwise")
    np.testing.assert_array_equal(load_combiner(tmp_path / "classwise").predict_proba(logits),
                                  stacker.predict_proba(logits))


def test_stacking_default_cv_and_out_of_fold(small_set) -> None:
    logits, y = small_set
    stacker = StackingCombiner(Cs=(0.01, 1.0), cv=3,
                               meta_features=("log_proba", "entropy", "max_proba")).fit(logits, y)
    assert stacker.C_ in (0.01, 1.0)
    assert stacker.oof_proba_.shape == (logits.n_rows, logits.n_classes)
    np.testing.assert_allclose(stacker.oof_proba_.sum(1), 1.0)
    # Out-of-fold accuracy is an honest (lower) estimate than the in-sample one.
    in_sample = (stacker.predict_proba(logits).argmax(1) == y).mean()
    assert (stacker.oof_proba_.argmax(1) == y).mean() <= in_sample + 0.02


def test_stacking_other_linear_meta_learner_round_trip(small_set, tmp_path) -> None:
    logits, y = small_set
    stacker = StackingCombiner(meta_learner=RidgeClassifier()).fit(logits, y)
    stacker.save(tmp_path / "ridge")
    np.testing.assert_array_equal(load_combiner(tmp_path / "ridge").predict_proba(logits),
                                  stacker.predict_proba(logits))


# -- gating ---------------------------------------------------------------------------------


def test_gate_weights_are_masked_and_normalised(small_set) -> None:
    logits, y = small_set
    gate = GatingCombiner(max_epochs=10, device="cpu", fusion="logits").fit(logits, y)
    mask = np.ones((logits.n_rows, 3), dtype=bool)
    mask[::2, 1] = False
    weights = gate.gate_weights(logits, mask=mask)
    assert weights.shape == (logits.n_rows, 3)
    assert np.all(weights[::2, 1] == 0.0)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    assert gate.n_epochs_ <= 10


def test_gate_trusts_the_reliable_expert(train_set) -> None:
    logits, y = train_set
    # The mixture gate alone must learn which expert to trust (the stacked one's classwise
    # layer knows it already); trains on 2000 rows.
    gate = GatingCombiner(max_epochs=6, max_rows=2000, fusion="mixture").fit(logits, y)
    weights = gate.gate_weights(logits)
    top = logits.logits["image"].argmax(1)
    # When the image expert names one of its own classes (y % 3 == 0) it is usually right.
    own = (top % 3) == 0
    assert weights[own, 0].mean() > weights[~own, 0].mean() + 0.2


def test_stacked_gate_starts_at_classwise_stacking_and_keeps_up(train_set, test_set) -> None:
    logits, y = train_set
    test, y_test = test_set
    untrained = GatingCombiner(max_epochs=1, patience=1).fit(logits, y)
    stacking = StackingCombiner(Cs=(1.0,), pattern_guard=False).fit(logits, y)
    gate = GatingCombiner(pattern_guard=False).fit(logits, y)
    accuracy = {name: float((c.predict(test) == y_test).mean())
                for name, c in {"gate": gate, "stacking": stacking}.items()}
    assert accuracy["gate"] >= accuracy["stacking"] - 0.01, accuracy
    # The warm start is classwise stacking: its per-expert class weights are not all 1.
    assert not np.allclose(untrained.gate_.scale.detach().numpy(), 1.0)


def test_a_gate_reading_the_features_beats_stacking_on_visible_difficulty() -> None:
    # Hard rows: one expert is confidently wrong or flat, and its embedding shows it (the
    # logits do not): only a gate that reads the features can tell which expert to distrust.
    from ensemble.simulated_logits import complementary_logits

    (fit, y), (test, y_test) = complementary_logits(3000, seed=0), complementary_logits(3000,
                                                                                         seed=1)
    accuracy = {}
    for name, combiner in {
        "voting": VotingCombiner(pattern_guard=False),
        "stacking": StackingCombiner(pattern_guard=False),
        "gate without features": GatingCombiner(read_features=False, pattern_guard=False),
        "gate": GatingCombiner(pattern_guard=False),
    }.items():
        accuracy[name] = float((combiner.fit(fit, y).predict(test) == y_test).mean())
    assert accuracy["gate"] > accuracy["stacking"] + 0.008, accuracy
    assert accuracy["gate"] > accuracy["gate without features"] + 0.008, accuracy
    assert accuracy["gate"] > accuracy["voting"] + 0.05, accuracy


def test_a_gate_fitted_on_features_needs_them_and_saves_them(small_set, tmp_path) -> None:
    logits, y = small_set
    gate = GatingCombiner(max_epochs=5, pattern_guard=False).fit(logits, y)
    assert gate.reads_features() and gate.feature_dims_ == (12, 12, 12)
    loaded = load_combiner(gate.save(tmp_path / "gate"))
    np.testing.assert_array_equal(loaded.predict_proba(logits), gate.predict_proba(logits))
    bare = LogitSet(dict(logits.logits), list(logits.class_names))
    with pytest.raises(InvalidLogitsError, match="features"):
        gate.predict_proba(bare)
    blind = GatingCombiner(max_epochs=5, read_features=False).fit(logits, y)
    assert not blind.reads_features() and blind.predict_proba(bare).shape == (300, 6)


# -- ensemble selection ---------------------------------------------------------------------


def test_selection_with_combiner_candidates_and_bagging(small_set, tmp_path) -> None:
    logits, y = small_set
    selection = EnsembleSelection(
        candidates=[VotingCombiner(method="geometric"), StackingCombiner(Cs=(1.0,))],
        n_bags=4, bag_fraction=0.6, metric="accuracy", n_iterations=5,
    ).fit(logits, y)
    assert selection.candidate_names_ == ("image", "text", "audio", "0:voting", "1:stacking")
    assert selection.counts_.sum() == 4 * (5 + 1)
    selection.save(tmp_path / "sel")
    assert (tmp_path / "sel" / "candidates" / "1" / "config.json").is_file()
    loaded = load_combiner(tmp_path / "sel")
    np.testing.assert_array_equal(loaded.predict_proba(logits), selection.predict_proba(logits))


@pytest.mark.parametrize("metric", ["nll", "accuracy", "brier"])
def test_selection_vectorised_trials_match_direct_mixtures(metric, make) -> None:
    logits, y = make(400, seed=3, missing=0.4)
    proba = np.exp(log_softmax(logits.stacked().astype(np.float64)))
    presence = np.asarray(logits.mask, dtype=np.float64)
    trials = _Trials(metric, proba, proba[np.arange(y.size), :, y], presence, y)
    pool = np.arange(3)
    for counts in (np.zeros(3), np.array([2.0, 0.0, 1.0])):
        expected = []
        for k in pool:
            trial = counts.copy()
            trial[k] += 1
            mixture = np.einsum("nk,nkc->nc", masked_weights(trial, presence), proba)
            expected.append(_LOSSES[metric](mixture, y))
        np.testing.assert_allclose(trials.losses(counts, pool), expected, rtol=1e-9)


def test_selection_sorted_initialisation(small_set) -> None:
    logits, y = small_set
    selection = EnsembleSelection(n_init=3, n_iterations=1).fit(logits, y)
    assert selection.counts_.sum() == 4
    assert (selection.counts_ >= 1).all()


# -- feature stacking -----------------------------------------------------------------------


def test_feature_stacking_needs_features(small_set) -> None:
    logits, y = small_set
    with pytest.raises(InvalidLogitsError, match="pre-logit features"):
        FeatureStacking().fit(dict(logits.logits), y)
    fitted = FeatureStacking(include_log_proba=True).fit(logits, y)
    narrow = LogitSet(dict(logits.logits), logits.class_names,
                      features={m: a[:, :5] for m, a in logits.features.items()})
    with pytest.raises(InvalidLogitsError, match="fitted on 12"):
        fitted.predict_proba(narrow)


def test_feature_stacking_with_svc_fits_but_refuses_pickle_save(small_set, tmp_path) -> None:
    logits, y = small_set
    svc = FeatureStacking(classifier=SVC()).fit(logits, y)
    np.testing.assert_allclose(svc.predict_proba(logits).sum(1), 1.0)
    with pytest.raises(ArtifactError, match=r"SVC without pickle.*LogisticRegression"):
        svc.save(tmp_path / "svc")
    assert not (tmp_path / "svc").exists()
