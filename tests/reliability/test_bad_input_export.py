"""Bad input around the ONNX export (issue 13): unfitted predictors, experts and combiners
that cannot be exported, tampered or newer export directories, wrong inputs at the runtime.
Every failure is a typed error naming the culprit, and nothing is half-written. Also the
tabular (scikit-learn) expert, which runs with its own code in the torch-free runtime."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _custom_combiner import MedianCombiner
from _helpers import debris, resign
from _tiny_data import CLASSES, colour_image, make_dataset
from datasets import Dataset
from threadpoolctl import threadpool_limits

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ensemble import FusionPredictor
from ensemble.combiners import create_combiner
from ensemble.exceptions import (
    ArtifactError,
    ConfigError,
    DataError,
    ExportError,
    ModalityError,
)
from ensemble.experts import ImageExpert, TabularExpert
from ensemble.export import export_predictor
from ensemble.logits import LogitSet
from ensemble.runtime import OnnxPredictor

pytestmark = [pytest.mark.slow, pytest.mark.export]


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _tabular_data(n: int, seed: int) -> Dataset:
    """Images and a tabular group whose ``hue`` field names the class most of the time."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    meta = [{"hue": CLASSES[k] if rng.random() < 0.8 else str(rng.choice(CLASSES)),
             "size": float(rng.normal())} for k in labels]
    meta[3] = None
    return Dataset.from_dict({
        "id": [f"r{i}" for i in range(n)],
        "image": [colour_image(CLASSES[k], rng) for k in labels],
        "meta": meta,
        "label": [CLASSES[k] for k in labels],
    })


@pytest.fixture(scope="module")
def tabular_predictor() -> FusionPredictor:
    train, held_out = _tabular_data(60, 0), _tabular_data(40, 1)
    experts = {"photo": ImageExpert("test_resnet", CLASSES, pretrained=False, image_size=32,
                                    column="image"),
               "meta": TabularExpert(column="meta", labels=CLASSES).fit(train)}
    logits = LogitSet.from_experts(experts, held_out, split="validation", features=True)
    labels = [CLASSES.index(v) for v in held_out["label"]]
    return FusionPredictor(experts, create_combiner("stacking").fit(logits, labels))


@pytest.fixture(scope="module")
def exported(tabular_predictor: FusionPredictor,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tabular_predictor.export(tmp_path_factory.mktemp("export") / "onnx")


@pytest.fixture
def copy(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "onnx"))


def test_a_tabular_expert_runs_natively_with_parity(tabular_predictor: FusionPredictor,
                                                    exported: Path) -> None:
    config = json.loads((exported / "config.json").read_text())
    assert config["experts"]["meta"]["runtime"] == "native"
    assert (exported / "experts" / "meta" / "estimator.skops").is_file()
    rows = _tabular_data(12, 2)
    inputs = {"image": list(rows["image"]), "meta": list(rows["meta"])}
    inputs["image"][:3] = [None] * 3
    expected = tabular_predictor.predict_proba(inputs)
    got = OnnxPredictor.load(exported).predict_proba(inputs)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_an_unfitted_predictor_is_refused(tabular_predictor: FusionPredictor,
                                          tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes a FusionPredictor"):
        export_predictor(object(), tmp_path / "out")
    unfitted = create_combiner("voting")
    with pytest.raises(ConfigError, match="not fitted"):
        FusionPredictor(dict(tabular_predictor.experts), unfitted)
    assert not (tmp_path / "out").exists()


def test_an_export_never_replaces_other_folders(tabular_predictor: FusionPredictor,
                                               tmp_path: Path) -> None:
    from _cli_runner import run_cli

    taken = tmp_path / "results"
    taken.mkdir()
    (taken / "mine.txt").write_text("not an export")
    with pytest.raises(ConfigError, match="exists and is not an ONNX export"):
        tabular_predictor.export(taken)
    assert (taken / "mine.txt").read_text() == "not an export"
    bundle = tabular_predictor.save(tmp_path / "run" / "bundle")
    for out in (tmp_path / "run", bundle / "onnx"):
        result = run_cli("export", str(bundle), "--out", str(out), check=False)
        assert result.returncode == 2 and "overlaps the bundle" in result.stderr
    assert FusionPredictor.load(bundle).class_names == tabular_predictor.class_names


def test_an_image_transform_without_equivalent_is_named(tmp_path: Path) -> None:
    expert = ImageExpert("test_resnet", CLASSES, pretrained=False, image_size=32,
                         data_config={"crop_mode": "border", "crop_pct": 0.9})
    logits = LogitSet.from_experts({"image": expert}, make_dataset(9), split="validation")
    predictor = FusionPredictor({"image": expert}, create_combiner("voting").fit(
        logits, np.arange(9) % 3))
    with pytest.raises(ExportError, match=r"image transform .* has no ONNX-runtime equivalent"):
        predictor.export(tmp_path / "out")
    assert not (tmp_path / "out").exists() and debris(tmp_path) == []


def test_a_combiner_without_a_graph_is_named(tabular_predictor: FusionPredictor,
                                             copy: Path) -> None:
    held_out = _tabular_data(20, 3)
    logits = LogitSet.from_experts(dict(tabular_predictor.experts), held_out,
                                   split="validation")
    combiner = MedianCombiner().fit(logits, [CLASSES.index(v) for v in held_out["label"]])
    predictor = FusionPredictor(dict(tabular_predictor.experts), combiner)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    with pytest.raises(ExportError, match=r"MedianCombiner combiner .* no export to ONNX"):
        predictor.export(copy)  # over an earlier export: it stays as it was
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    assert OnnxPredictor.load(copy).class_names == tabular_predictor.class_names
    assert debris(copy.parent) == []


def test_a_torch_expert_without_export_is_named(tabular_predictor: FusionPredictor,
                                                tmp_path: Path) -> None:
    class Opaque(ImageExpert):
        registry_name = "opaque"

        def export_onnx(self, directory: Path) -> dict[str, Any]:
            return super(ImageExpert, self).export_onnx(directory)

    expert = Opaque("test_resnet", CLASSES, pretrained=False, image_size=32)
    expert.export_inputs = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
        ExportError("the opaque expert does not say which tensors its model reads"))
    predictor = FusionPredictor({"photo": expert, "meta": tabular_predictor.experts["meta"]},
                                tabular_predictor.combiner)
    with pytest.raises(ExportError, match="opaque expert"):
        predictor.export(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["modified", "missing", "extra", "symlink"])
def test_a_tampered_export_is_refused(copy: Path, damage: str) -> None:
    graph = copy / "experts" / "photo" / "model.onnx"
    if damage == "modified":
        graph.write_bytes(graph.read_bytes()[:-8] + b"\x00" * 8)
    elif damage == "missing":
        graph.unlink()
    elif damage == "extra":
        (copy / "experts" / "photo" / "evil.onnx").write_bytes(b"\x08\x07")
    else:
        graph.unlink()
        graph.symlink_to(copy / "combiner" / "model.onnx")
    with pytest.raises(ArtifactError, match="export"):
        OnnxPredictor.load(copy)


def test_an_export_from_a_newer_format_is_refused(copy: Path) -> None:
    config = json.loads((copy / "config.json").read_text())
    config["format_version"] = 99
    (copy / "config.json").write_text(json.dumps(config))
    resign(copy)
    with pytest.raises(ArtifactError, match=r"format version 99.*upgrade"):
        OnnxPredictor.load(copy)


def test_a_bundle_is_not_an_export(tabular_predictor: FusionPredictor, tmp_path: Path) -> None:
    bundle = tabular_predictor.save(tmp_path / "bundle")
    with pytest.raises(ArtifactError, match="not an ONNX export"):
        FusionPredictor.load(bundle, backend="onnxruntime")
    with pytest.raises(ConfigError, match="backend must be one of"):
        FusionPredictor.load(bundle, backend="tensorrt")


def test_a_corrupt_graph_that_passes_the_manifest_is_an_artifact_error(copy: Path) -> None:
    (copy / "combiner" / "model.onnx").write_bytes(b"not a graph")
    resign(copy)
    with pytest.raises(ArtifactError, match="not a loadable ONNX graph"):
        OnnxPredictor.load(copy)


def test_int8_needs_an_int8_export(exported: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no int8 graphs.*--quantize int8"):
        OnnxPredictor.load(exported, precision="int8")


def test_wrong_inputs_at_the_runtime(exported: Path) -> None:
    predictor = OnnxPredictor.load(exported)
    with pytest.raises(DataError, match="array must have 2 or 3 dimensions"):
        predictor.predict_proba({"image": np.zeros((2, 2, 8, 8, 3), dtype=np.uint8)})
    with pytest.raises(ModalityError, match=r"unknown input column 'imgae'.*image"):
        predictor.predict_proba({"imgae": [colour_image("red")]})
    with pytest.raises(DataError, match="one entry per example"):
        predictor.predict_proba({"image": [colour_image("red")] * 2, "meta": [None]})
    with pytest.raises(DataError, match="no input for any expert"):
        predictor.predict_proba({"image": [None], "meta": [None]})
    with pytest.raises(DataError):
        predictor.predict_proba({"image": ["/no/such/image.png"]})
    proba = predictor.predict_proba({"image": np.zeros((8, 8, 3), dtype=np.uint8)})
    assert proba.shape == (1, len(CLASSES))
