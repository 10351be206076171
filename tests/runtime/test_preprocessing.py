"""The torch-free runtime's preprocessing gives the tensors the experts' own (torchvision,
transformers) preprocessing gives: image steps from timm's eval transform, texts through the
exported tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ensemble.exceptions import ArtifactError
from ensemble.experts import ImageExpert, TextExpert
from ensemble.runtime.preprocessing import create_preprocessor

CLASSES = ["a", "b"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (50, 90), (120, 33), (20, 20), (200, 150)]  # some smaller than the crop
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.mark.parametrize("options", [
    {"image_size": 32},
    {"image_size": 48, "data_config": {"interpolation": "bilinear", "crop_pct": 0.75}},
    {"image_size": 40, "data_config": {"crop_mode": "squash"}},
])
def test_image_steps_match_the_eval_transform(options: dict, tmp_path: Path) -> None:
    """The runtime's PIL steps, then the graph's own steps (scale, normalise, NCHW), give
    what the expert's eval transform gives."""
    expert = ImageExpert("test_resnet", CLASSES, pretrained=False, **options)
    spec = expert.export_preprocessing(tmp_path)
    preprocess = create_preprocessor(spec, tmp_path, list(expert.export_inputs()))
    images = _images()
    ids = [str(i) for i in range(len(images))]
    expected = expert.collate_inputs(images, ids, train=False)["pixel_values"].numpy()
    pixels = preprocess(images, ids)["pixels"]
    assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
    got = expert.export_batch({"pixels": torch.from_numpy(pixels)})["pixel_values"].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_text_matches_the_tokenizer(tiny_text_checkpoint: Path, tmp_path: Path) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), CLASSES, max_length=6)
    spec = expert.export_preprocessing(tmp_path)
    names = list(expert.export_inputs())
    preprocess = create_preprocessor(spec, tmp_path, names)
    texts = ["red circle", "big happy cat dog apple sun moon star", "unknownword", "sad"]
    ids = [str(i) for i in range(len(texts))]
    expected = expert.collate_inputs(texts, ids, train=False)["inputs"]
    got = preprocess(texts, ids)
    assert list(got) == names
    for name in names:
        np.testing.assert_array_equal(got[name], expected[name].numpy())


def test_bad_descriptions_are_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="invalid preprocessing"):
        create_preprocessor({"type": "image", "steps": [{"op": "rotate"}]}, tmp_path, ["x"])
    with pytest.raises(ArtifactError, match="invalid preprocessing"):
        create_preprocessor({"type": "video"}, tmp_path, ["x"])
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a tokenizer file"):
        create_preprocessor({"type": "text", "tokenizer": "tokenizer.json", "max_length": 8,
                             "pad_id": 0}, tmp_path, ["input_ids"])
