"""FusionPredictor: inputs of every kind, missing modalities, explain, datasets, bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ensemble import FusionPredictor
from ensemble.combiners import load_combiner
from ensemble.exceptions import ArtifactError, ConfigError, DataError, ModalityError
from ensemble.experts import load_expert


@pytest.fixture(scope="module")
def predictor(synthetic_run: Path) -> FusionPredictor:
    return FusionPredictor.load(synthetic_run / "bundle")


@pytest.fixture(scope="module")
def gated(synthetic_run: Path, predictor: FusionPredictor) -> FusionPredictor:
    return FusionPredictor(dict(predictor.experts),
                           load_combiner(synthetic_run / "combiners" / "gating"))


def _red() -> Image.Image:
    return Image.new("RGB", (32, 32), (215, 40, 40))


def test_experts_mapping_and_classes(predictor: FusionPredictor) -> None:
    assert list(predictor.experts) == ["image", "text"]
    assert predictor.experts["text"].modality == "text"
    with pytest.raises(TypeError):
        predictor.experts["image"] = None  # type: ignore[index]
    assert predictor.class_names == ("red-alpha", "red-beta", "blue-alpha", "blue-beta")
    assert "FusionPredictor(experts={image=ImageExpert" in repr(predictor)
    assert predictor.config["recipe"]["name"] == "synthetic"


def test_inputs_of_every_kind(predictor: FusionPredictor, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    _red().save(path)
    array = np.asarray(_red())
    images = [_red(), str(path), path, array, None]
    texts = ["apple anchor", None, "bridge the", "photo of amber", "basket button"]
    proba = predictor.predict_proba(images=images, texts=texts)
    assert proba.shape == (5, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # The same example gives the same answer whatever form the image takes.
    single = predictor.predict_proba(images=array, texts="apple anchor")
    np.testing.assert_allclose(single[0], proba[0], atol=1e-5)
    np.testing.assert_allclose(predictor.predict_proba(images=np.stack([array, array]),
                                                       texts=["apple anchor"] * 2)[1],
                               proba[0], atol=1e-5)
    labels = predictor.predict(images=images, texts=texts)
    assert list(labels) == [predictor.class_names[k] for k in proba.argmax(axis=1)]


def test_missing_modality_matches_masking(predictor: FusionPredictor) -> None:
    text_only = predictor.predict_proba(texts=["apple anchor", "bridge bottle"])
    masked = predictor.predict_proba(images=[None, None], texts=["apple anchor", "bridge bottle"])
    np.testing.assert_allclose(text_only, masked)
    image_only = predictor.predict_proba(images=[_red()])
    assert image_only.shape == (1, 4)


def test_batching_does_not_change_results(predictor: FusionPredictor) -> None:
    texts = [f"apple {w}" for w in ("anchor", "arrow", "atlas", "autumn", "amber")]
    images = [_red()] * 5
    reference = predictor.predict_proba(images=images, texts=texts)
    predictor.batch_size = 2
    try:
        np.testing.assert_allclose(predictor.predict_proba(images=images, texts=texts),
                                   reference, atol=1e-5)
    finally:
        predictor.batch_size = 32


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({}, DataError, "no inputs given"),
    ({"images": [None], "texts": [None]}, DataError, "no input for any expert"),
    ({"images": [_red()], "texts": ["a", "b"]}, DataError, "one entry per example"),
    ({"texts": []}, DataError, "empty"),
    ({"texts": [""]}, DataError, "empty"),
    ({"images": 3}, DataError, "cannot read a int"),
    ({"inputs": {"audio": ["x"]}}, ModalityError, "unknown input column 'audio'"),
])
def test_input_errors(predictor: FusionPredictor, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        predictor.predict(**kwargs)


def test_explain_gives_expert_probabilities_and_gate_weights(gated: FusionPredictor) -> None:
    rows = gated.explain(images=[_red(), None], texts=["apple anchor", "bridge basket"])
    first, second = rows
    assert first["weights_kind"] == "gate"
    assert set(first["weights"]) == {"image", "text"}
    assert sum(first["weights"].values()) == pytest.approx(1.0)
    assert second["weights"]["image"] == 0.0 and second["weights"]["text"] == pytest.approx(1)
    assert second["experts"]["image"] == {"available": False}
    text = first["experts"]["text"]
    assert text["available"] and sum(text["probabilities"].values()) == pytest.approx(1)
    assert first["label"] == max(first["probabilities"], key=first["probabilities"].get)


def test_explain_with_fitted_weights(synthetic_run: Path, predictor: FusionPredictor) -> None:
    voting = FusionPredictor(dict(predictor.experts),
                             load_combiner(synthetic_run / "combiners" / "selection"))
    row = voting.explain(texts="apple anchor")[0]
    assert row["weights_kind"] == "fitted"
    assert "image" in row["weights"] and sum(row["weights"].values()) == pytest.approx(1.0)
    assert predictor.explain(texts="apple")[0]["weights"] is None  # stacking: no weights


def test_dataset_prediction_and_evaluation(predictor: FusionPredictor, synthetic_data,
                                           synthetic_run: Path) -> None:
    test = synthetic_data["test"]
    out = predictor.predict_dataset(test)
    assert out.column_names == ["id", "prediction", "confidence", "probabilities"]
    assert out["id"] == test["id"] and len(out["probabilities"][0]) == 4
    scores = predictor.evaluate(test)
    assert set(scores) == {"fused", "image", "text", "oracle"}
    metrics = json.loads((synthetic_run / "report" / "metrics.json").read_text())
    stacking = next(r for r in metrics["leaderboard"] if r["model"] == "auto")
    assert scores["fused"]["accuracy"] == pytest.approx(stacking["accuracy"]["value"])
    assert scores["fused"]["accuracy"] == pytest.approx(
        float(np.mean(np.array(out["prediction"]) == np.array(
            [test.features["label"].int2str(v) for v in test["label"]]))))


def test_constructor_checks(synthetic_run: Path, predictor: FusionPredictor) -> None:
    from ensemble.combiners import create_combiner

    experts = dict(predictor.experts)
    with pytest.raises(ConfigError, match="not fitted"):
        FusionPredictor(experts, create_combiner("voting"))
    with pytest.raises(ModalityError, match="fitted on modalities"):
        FusionPredictor({"image": experts["image"]}, predictor.combiner)
    with pytest.raises(ConfigError, match="batch_size"):
        FusionPredictor(experts, predictor.combiner, batch_size=0)


def test_save_load_round_trip(predictor: FusionPredictor, tmp_path: Path) -> None:
    predictor.save(tmp_path / "b", config={"note": "hi"})
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "combiner/config.json" in manifest["files"] and "torch" in manifest["versions"]
    assert "experts/text/model.safetensors" in manifest["files"]
    assert not any(name.endswith((".pt", ".pkl", ".bin")) for name in manifest["files"])
    loaded = FusionPredictor.load(tmp_path / "b")
    assert loaded.config == {"note": "hi"}
    kwargs = {"images": [_red(), None], "texts": ["apple anchor", "bridge"]}
    np.testing.assert_allclose(loaded.predict_proba(**kwargs), predictor.predict_proba(**kwargs),
                               atol=1e-6)


@pytest.fixture
def bundle_copy(synthetic_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(synthetic_run / "bundle", target)
    return target


def _edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(("damage", "match"), [
    (lambda b: (b / "combiner" / "config.json").write_text("{}"), "does not match its sha256"),
    (lambda b: (b / "experts" / "image" / "model.safetensors").unlink(), "is missing"),
    (lambda b: (b / "experts" / "evil.py").write_text("print(1)"), "not listed"),
    (lambda b: (b / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda b: _edit_manifest(b, lambda m: m["files"].update({"../x": "0"})), "leaves the bundle"),
    (lambda b: _edit_manifest(b, lambda m: m["files"].update({"/etc/passwd": "0"})),
     "leaves the bundle"),
    (lambda b: _edit_manifest(b, lambda m: m.update(format_version=99)), "upgrade"),
])
def test_load_refuses_damaged_bundles(bundle_copy: Path, damage, match: str) -> None:
    damage(bundle_copy)
    with pytest.raises(ArtifactError, match=match):
        FusionPredictor.load(bundle_copy)


def test_load_refuses_symlinks_and_non_bundles(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / "link").symlink_to(tmp_path)
    with pytest.raises(ArtifactError, match="symlink"):
        FusionPredictor.load(bundle_copy)
    with pytest.raises(ArtifactError, match="not a bundle directory"):
        FusionPredictor.load(tmp_path / "nothing")


def test_load_rebuilds_experts_without_the_network(synthetic_run: Path) -> None:
    expert = load_expert(synthetic_run / "bundle" / "experts" / "text")
    assert expert.checkpoint.endswith("tiny-synthetic")


def test_cpu_inference_settings(synthetic_run: Path, predictor: FusionPredictor) -> None:
    import torch

    image = predictor.experts["image"]
    # Image experts hold their weights channels_last; the values are the saved ones.
    convs = [p for p in image.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    saved = json.loads((synthetic_run / "bundle" / "experts" / "image" / "ensemble.json")
                       .read_text())
    assert image.fingerprint() == saved["fingerprint"]

    images, texts = [_red(), None, _red()], ["apple anchor", "bridge the", None]
    fp32 = predictor.predict_proba(images=images, texts=texts)
    bf16 = FusionPredictor.load(synthetic_run / "bundle", precision="bf16")
    assert (predictor.precision, bf16.precision) == ("fp32", "bf16")
    proba = bf16.predict_proba(images=images, texts=texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, fp32, atol=0.05)
    with pytest.raises(ConfigError, match="precision"):
        FusionPredictor(dict(predictor.experts), predictor.combiner, precision="fp16")
