"""Cross-fitting: stratified folds, out-of-fold logits, bagged experts, resume, the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _tiny_data import CLASSES, make_dataset
from datasets import DatasetDict

from ensemble.combiners import create_combiner
from ensemble.crossfit import cross_fit, fold_indices, pool_splits
from ensemble.exceptions import ArtifactError, ConfigError, DataError, LeakageError
from ensemble.experts import BaggedExpert, ImageExpert, TrainingConfig, load_expert
from ensemble.logits import LogitSet

CONFIG = TrainingConfig(epochs=1, batch_size=8, learning_rate=1e-2, progress=False)


def _image() -> ImageExpert:
    return ImageExpert("test_resnet", CLASSES, pretrained=False, image_size=32)


@pytest.fixture(scope="module")
def data() -> DatasetDict:
    return DatasetDict({
        "train": make_dataset(18, seed=0, prefix="train", missing_image=[4]),
        "validation": make_dataset(9, seed=1, prefix="val"),
        "test": make_dataset(6, seed=2, prefix="test"),
    })


@pytest.fixture(scope="module")
def pool(data: DatasetDict):
    return pool_splits(data, ["train", "validation"])


@pytest.fixture(scope="module")
def fitted(pool, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("crossfit")
    return cross_fit(_image, pool, folds=3, config=CONFIG, work_dir=work), work


def test_folds_are_stratified_disjoint_and_cover_every_row() -> None:
    labels = np.array([0, 1, 2] * 6 + [0, 1])
    folds = fold_indices(labels, 3, seed=0)
    rows = np.concatenate(folds)
    assert sorted(rows.tolist()) == list(range(len(labels)))
    for held_out in folds:
        counts = np.bincount(labels[held_out], minlength=3)
        assert counts.min() >= 2 and counts.max() <= 3
    again = fold_indices(labels, 3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a, b)
                   for a, b in zip(folds, fold_indices(labels, 3, seed=1), strict=True))


@pytest.mark.parametrize("folds", [1, 0, -2, True, 2.5])
def test_invalid_fold_counts_are_refused(folds) -> None:
    with pytest.raises(ConfigError, match="folds"):
        fold_indices([0, 1] * 5, folds)


def test_a_class_rarer_than_the_folds_is_named() -> None:
    with pytest.raises(DataError, match=r"\[2\].*at most 1"):
        fold_indices([0, 1, 0, 1, 0, 1, 2], 3)


def test_each_row_is_scored_by_the_member_that_did_not_train_on_it(pool, fitted) -> None:
    result, _ = fitted
    bagged, oof = result.expert, result.oof
    assert len(bagged.members) == 3 and oof.n_rows == len(pool)
    assert list(oof.ids) == list(pool["id"])
    labels = np.asarray(pool["label"])
    for member, held_out in zip(bagged.members, fold_indices(labels, 3), strict=True):
        expected = member.predict_logits(pool.select(held_out), progress=False)
        np.testing.assert_allclose(oof.logits["image"][held_out], expected, rtol=1e-5,
                                   atol=1e-5)
        train_rows = pool.select(np.setdiff1d(np.arange(len(pool)), held_out))
        assert member.trained_on_ == [train_rows._fingerprint]
    # The missing image (train row 4) is masked, not scored.
    assert not oof.mask[4, 0] and oof.mask.sum() == len(pool) - 1
    assert oof.features["image"].shape[0] == len(pool)


def test_out_of_fold_logits_pass_the_leakage_guard_in_sample_ones_do_not(pool, fitted) -> None:
    result, _ = fitted
    labels = np.asarray(pool["label"])
    assert not result.oof.provenance["image"].in_sample
    create_combiner("stacking").fit(result.oof, labels)  # held out by construction
    in_sample = LogitSet.from_experts({"image": result.expert}, pool)
    assert in_sample.provenance["image"].in_sample
    with pytest.raises(LeakageError):
        create_combiner("stacking").fit(in_sample, labels)


def test_bagged_logits_are_the_members_mean_and_survive_save_and_load(
        data: DatasetDict, fitted, tmp_path: Path) -> None:
    bagged = fitted[0].expert
    test = data["test"]
    logits = bagged.predict_logits(test, progress=False)
    mean = np.mean([m.predict_logits(test, progress=False) for m in bagged.members], axis=0)
    np.testing.assert_allclose(logits, mean, rtol=1e-6, atol=1e-6)
    proba = bagged.predict_proba(test, progress=False)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    loaded = load_expert(bagged.save_pretrained(tmp_path / "bagged"))
    assert isinstance(loaded, BaggedExpert) and loaded.fingerprint() == bagged.fingerprint()
    np.testing.assert_array_equal(loaded.predict_logits(test, progress=False), logits)
    assert loaded.trained_on_ == bagged.trained_on_
    config = json.loads((tmp_path / "bagged" / "ensemble.json").read_text())
    config["fingerprint"] = "0" * 64
    (tmp_path / "bagged" / "ensemble.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="do not match"):
        load_expert(tmp_path / "bagged")


def test_members_must_share_kind_and_classes(fitted, tiny_text_checkpoint: Path) -> None:
    from ensemble.experts import TextExpert

    member = fitted[0].expert.members[0]
    with pytest.raises(ConfigError, match="one kind"):
        BaggedExpert([member, TextExpert(str(tiny_text_checkpoint), CLASSES)])
    with pytest.raises(ConfigError, match="at least one"):
        BaggedExpert([])


def test_an_interrupted_cross_fit_resumes_at_the_first_unfinished_fold(
        pool, fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    result, work = fitted
    shutil.rmtree(work / "fold-2")  # as if killed while training the last fold
    built: list[int] = []

    def counting_image() -> ImageExpert:
        built.append(1)
        return _image()

    again = cross_fit(counting_image, pool, folds=3, config=CONFIG, work_dir=work)
    assert len(built) == 1, "only the unfinished fold is trained again"
    np.testing.assert_array_equal(again.oof.logits["image"], result.oof.logits["image"])
    assert again.expert.fingerprint() == result.expert.fingerprint()


def test_recipe_cross_fit_runs_end_to_end_and_the_bundle_predicts(tmp_path: Path) -> None:
    from ensemble import FusionPredictor, Pipeline, load_recipe

    repo = Path(__file__).resolve().parents[1]
    recipe = load_recipe(repo / "recipes" / "synthetic.yaml", [
        "cross_fit.folds=2", "evaluation.bootstrap=20", "evaluation.plots=false",
        "experts.image.training.epochs=1", "experts.text.training.epochs=1",
        "combiners=[voting, stacking]", "bundle.combiner=stacking",
    ])
    result = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True).run()
    pipeline = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True)
    oof, labels = pipeline.load_logits("out_of_fold")
    data = pipeline.dataset
    assert oof.n_rows == len(data["train"]) + len(data["validation"]) == len(labels)
    metrics = json.loads((result.report.parent / "metrics.json").read_text())
    assert "2-fold cross-fitting" in metrics["fit_split"]
    predictor = FusionPredictor.load(result.bundle)
    assert all(isinstance(e, BaggedExpert) for e in predictor.experts.values())
    row = data["test"][0]
    proba = predictor.predict_proba(images=[row["image"], None], texts=[None, row["text"]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    again = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True).run()
    assert again.ran() == [], "a second run skips every stage"


@pytest.mark.parametrize("change, message", [
    (["cross_fit.folds=1"], "at least 2"),
    (["cross_fit.folds=3", "data.fit_split=train"], "must differ"),
])
def test_bad_cross_fit_settings_are_named(change: list[str], message: str) -> None:
    from ensemble import load_recipe

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match=message):
        load_recipe(repo / "recipes" / "synthetic.yaml", change)
