"""ONNX export of a bundle (issue 13): parity with the torch predictor on every missing
pattern, int8 graphs, the torch-free runtime, and the CLI (`ensemble export`,
`ensemble predict --backend onnx`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from _cli_runner import cli_env, run_cli

from ensemble import FusionPredictor
from ensemble.combiners import create_combiner, load_combiner
from ensemble.runtime import OnnxPredictor

pytestmark = [pytest.mark.slow, pytest.mark.export]


@pytest.fixture(scope="module")
def exported(synthetic_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic run's bundle exported by the CLI, with int8 graphs."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    result = run_cli("export", str(synthetic_run / "bundle"), "--out", str(out),
                     "--quantize", "int8")
    assert "predict with: ensemble predict" in result.stderr
    return out


@pytest.fixture(scope="module")
def inputs(synthetic_data) -> dict[str, list]:
    """The synthetic test split with every availability pattern: both, image only, text
    only."""
    test = synthetic_data["test"]
    images, texts = list(test["image"]), list(test["text"])
    images[:8] = [None] * 8
    texts[8:16] = [None] * 8
    return {"image": images, "text": texts}


def test_export_layout_and_manifest(exported: Path) -> None:
    config = json.loads((exported / "config.json").read_text())
    assert config["kind"] == "OnnxExport"
    assert config["precisions"] == ["fp32", "int8"]
    assert config["experts"]["image"]["graphs"] == {"fp32": "model.onnx",
                                                     "int8": "model.int8.onnx"}
    assert config["experts"]["text"]["preprocessing"]["tokenizer"] == "tokenizer.json"
    image = config["experts"]["image"]
    assert [s["op"] for s in image["preprocessing"]["steps"]] == ["resize", "center_crop"]
    assert [s["op"] for s in image["preprocessing"]["in_graph"]] == ["to_tensor", "normalize"]
    assert image["inputs"] == ["pixels"]
    manifest = json.loads((exported / "manifest.json").read_text())
    files = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}


def test_onnx_matches_torch_on_every_pattern(synthetic_run: Path, exported: Path,
                                             inputs: dict[str, list]) -> None:
    torch_predictor = FusionPredictor.load(synthetic_run / "bundle")
    onnx_predictor = FusionPredictor.load(exported, backend="onnxruntime")
    assert isinstance(onnx_predictor, OnnxPredictor)
    assert onnx_predictor.class_names == torch_predictor.class_names
    expected, got = torch_predictor.predict_proba(inputs), onnx_predictor.predict_proba(inputs)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    reference, logits = torch_predictor.logits(inputs), onnx_predictor.logits(inputs)
    for name in reference.expert_names:
        np.testing.assert_allclose(logits.logits[name], reference.logits[name], atol=1e-4)
        np.testing.assert_allclose(logits.features[name], reference.features[name], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(logits.mask), np.asarray(reference.mask))
    # A row with one input gets that expert's own distribution, as with torch.
    assert list(onnx_predictor.predict(inputs)) == list(torch_predictor.predict(inputs))


def test_every_combiner_exports_with_parity(synthetic_run: Path, synthetic_data,
                                            inputs: dict[str, list], tmp_path: Path) -> None:
    """One selection over every other kind (voting, stacking, gating, feature stacking) as
    candidates: each candidate's graph is inside the exported one."""
    bundle = FusionPredictor.load(synthetic_run / "bundle")
    candidates = [load_combiner(synthetic_run / "combiners" / name)
                  for name in ("voting", "stacking", "gating", "feature_stacking")]
    logits = bundle.logits(inputs)
    labels = np.asarray(synthetic_data["test"]["label"])  # ClassLabel order = class_names
    selection = create_combiner("selection", candidates=candidates, n_iterations=8,
                                n_init=3).fit(logits, labels)
    assert selection.counts_[len(logits.expert_names):].sum() > 0  # candidates are used
    predictor = FusionPredictor(dict(bundle.experts), selection)
    onnx_predictor = FusionPredictor.load(predictor.export(tmp_path / "selection"),
                                          backend="onnxruntime")
    assert json.loads((tmp_path / "selection" / "config.json").read_text()
                      )["combiner"]["reads_features"]
    expected, got = predictor.predict_proba(inputs), onnx_predictor.predict_proba(inputs)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    # explain reports the selection's fitted weights over experts and candidates, as torch.
    torch_row, onnx_row = predictor.explain(inputs)[0], onnx_predictor.explain(inputs)[0]
    assert onnx_row["weights_kind"] == torch_row["weights_kind"] == "fitted"
    assert onnx_row["weights"] == pytest.approx(torch_row["weights"])
    assert onnx_row["label"] == torch_row["label"]


def test_int8_graphs_predict(exported: Path, inputs: dict[str, list]) -> None:
    fp32 = OnnxPredictor.load(exported)
    int8 = OnnxPredictor.load(exported, precision="int8")
    assert int8.precision == "int8" and "int8" in repr(int8)
    proba = int8.predict_proba(inputs)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # Quantised weights move the logits a little, not the decisions wholesale.
    agreement = (proba.argmax(axis=1) == fp32.predict_proba(inputs).argmax(axis=1)).mean()
    assert agreement >= 0.8


_NO_TORCH = textwrap.dedent("""
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "timm", "transformers",
                                      "accelerate"):
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, Block())
    from ensemble.runtime import OnnxPredictor

    predictor = OnnxPredictor.load(sys.argv[1])
    proba = predictor.predict_proba({"image": [sys.argv[2], None], "text": [None, sys.argv[3]]})
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({"proba": proba.tolist(), "modules": loaded}))
""")


def test_runtime_never_imports_torch(exported: Path, synthetic_data, tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    synthetic_data["test"][0]["image"].save(image)
    text = synthetic_data["test"][1]["text"]
    result = subprocess.run([sys.executable, "-c", _NO_TORCH, str(exported), str(image), text],
                            env=cli_env(), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for heavy in ("torch", "timm", "transformers", "torchvision", "sklearn", "datasets"):
        assert heavy not in report["modules"]
    expected = OnnxPredictor.load(exported).predict_proba(
        {"image": [str(image), None], "text": [None, text]})
    np.testing.assert_allclose(report["proba"], expected, atol=1e-6)


def test_cli_predict_with_the_onnx_backend(exported: Path, synthetic_data,
                                           tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    synthetic_data["test"][0]["image"].save(image)
    text = synthetic_data["test"][0]["text"]
    result = run_cli("predict", str(exported), "--backend", "onnx", "--precision", "int8",
                     "--input", f"image={image}", "--input", f"text={text}", "-q")
    row = json.loads(result.stdout)["predictions"][0]
    expected = OnnxPredictor.load(exported, precision="int8").predict_proba(
        {"image": [str(image)], "text": [text]})[0]
    names = OnnxPredictor.load(exported).class_names
    assert row["label"] == names[int(expected.argmax())]
    np.testing.assert_allclose([row["probabilities"][c] for c in names], expected, atol=1e-6)
    assert row["weights"] is None  # stacking has no weights over its inputs
    assert row["experts"]["image"]["available"] and row["input"]["text"] == text
