"""``FusionPredictor`` inputs by column name: mappings, row dicts, the ``images=``/``texts=``
shortcuts and their errors; and saved expert folders read by plain timm / transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from _tiny_data import CLASSES, colour_image, colour_text
from datasets import Dataset, Image
from PIL import Image as PILImage
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from ensemble import FusionPredictor
from ensemble.combiners import create_combiner
from ensemble.exceptions import DataError, ModalityError
from ensemble.experts import Expert, ImageExpert, TextExpert, create_expert
from ensemble.labels import softmax
from ensemble.logits import LogitSet

FIT_ARGS = {"epochs": 1, "batch_size": 4, "eval_batch_size": 4, "learning_rate": 1e-2,
            "progress": False}


def _rows(n: int, seed: int) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % 3] for i in range(n)]
    return {"id": [f"r{seed}-{i}" for i in range(n)],
            "photo": [colour_image(k, rng) for k in labels],
            "title": [colour_text(k, rng) for k in labels],
            "description": [colour_text(k, rng) for k in labels],
            "label": labels}


def _dataset(n: int, seed: int) -> Dataset:
    return Dataset.from_dict(_rows(n, seed)).cast_column("photo", Image())


def _text(checkpoint: Path, column: str, seed: int = 0) -> TextExpert:
    return TextExpert(str(checkpoint), CLASSES, column=column, pooling="model", seed=seed)


@pytest.fixture(scope="module")
def experts(tiny_text_checkpoint: Path) -> dict[str, Expert]:
    """Two text experts on ``title`` (different seeds), one on ``description``, one image
    expert on ``photo``; named unlike their columns."""
    return {
        "title_a": _text(tiny_text_checkpoint, "title", seed=0),
        "title_b": _text(tiny_text_checkpoint, "title", seed=1),
        "desc": _text(tiny_text_checkpoint, "description"),
        "cnn": ImageExpert("test_resnet", CLASSES, column="photo", pretrained=False,
                           image_size=32),
    }


@pytest.fixture(scope="module")
def predictor(experts: dict[str, Expert]) -> FusionPredictor:
    held_out = _dataset(9, 1)
    logits = LogitSet.from_experts(experts, held_out, split="validation")
    combiner = create_combiner("voting").fit(logits, held_out["label"])
    return FusionPredictor(experts, combiner)


@pytest.fixture(scope="module")
def inputs() -> dict[str, list[Any]]:
    rows = _rows(3, 2)
    return {"photo": rows["photo"], "title": rows["title"], "description": rows["description"]}


def test_columns_name_each_input_once(predictor: FusionPredictor) -> None:
    assert predictor.columns == {"title": "text", "description": "text", "photo": "image"}


def test_inputs_by_column_name_and_as_row_dicts_agree(predictor: FusionPredictor,
                                                      inputs: dict[str, list[Any]]) -> None:
    by_column = predictor.predict_proba(inputs)
    assert by_column.shape == (3, 3)
    np.testing.assert_allclose(by_column.sum(axis=1), 1.0, atol=1e-6)
    rows = [{column: values[i] for column, values in inputs.items()} for i in range(3)]
    np.testing.assert_allclose(predictor.predict_proba(rows), by_column, rtol=0, atol=1e-6)


def test_a_row_without_a_column_lacks_that_input(predictor: FusionPredictor,
                                                 inputs: dict[str, list[Any]]) -> None:
    rows = [{"title": inputs["title"][0]},
            {"photo": inputs["photo"][1], "description": None}]
    explained = predictor.explain(rows)
    assert [name for name, e in explained[0]["experts"].items() if e["available"]] \
        == ["title_a", "title_b"]
    assert [name for name, e in explained[1]["experts"].items() if e["available"]] == ["cnn"]


def test_two_experts_on_one_column_both_read_it(predictor: FusionPredictor,
                                                experts: dict[str, Expert],
                                                inputs: dict[str, list[Any]]) -> None:
    explained = predictor.explain(inputs)
    for name in ("title_a", "title_b"):
        expected = softmax(experts[name].predict_logits(inputs["title"], progress=False), axis=1)
        got = [[row["experts"][name]["probabilities"][c] for c in CLASSES] for row in explained]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    a, b = ([row["experts"][n]["probabilities"]["red"] for row in explained]
            for n in ("title_a", "title_b"))
    assert not np.allclose(a, b)  # two models, not one result copied


def test_texts_shortcut_is_ambiguous_with_two_text_columns(
        predictor: FusionPredictor, inputs: dict[str, list[Any]]) -> None:
    with pytest.raises(ModalityError, match=r"texts= is ambiguous.*\['description', 'title'\]"
                                            r".*by column name") as info:
        predictor.predict(texts=inputs["title"])
    assert "--input description=" in str(info.value)


def test_images_shortcut_feeds_the_one_image_column(predictor: FusionPredictor,
                                                    inputs: dict[str, list[Any]]) -> None:
    text_only = {"title": inputs["title"], "description": inputs["description"]}
    np.testing.assert_allclose(predictor.predict_proba(text_only, images=inputs["photo"]),
                               predictor.predict_proba(inputs), rtol=0, atol=1e-6)
    only_images = predictor.explain(images=inputs["photo"][:1])[0]["experts"]
    assert only_images["cnn"]["available"] and not only_images["title_a"]["available"]
    with pytest.raises(DataError, match=r"column 'photo' was given twice"):
        predictor.predict(inputs, images=inputs["photo"])


def test_an_unknown_column_suggests_the_closest(predictor: FusionPredictor,
                                                inputs: dict[str, list[Any]]) -> None:
    with pytest.raises(ModalityError, match=r"unknown input column 'titel'\. Did you mean "
                                            r"'title'\?.*description"):
        predictor.predict({"titel": inputs["title"]})
    with pytest.raises(ModalityError, match=r"unknown input column 'titel'"):
        predictor.predict([{"titel": "red"}])


@pytest.mark.parametrize(("name", "column"), [("cnn", "photo"), ("desc", "description")])
def test_an_expert_name_instead_of_its_column_names_the_column(
        predictor: FusionPredictor, inputs: dict[str, list[Any]], name: str,
        column: str) -> None:
    with pytest.raises(ModalityError, match=rf"'{name}' is an expert, not an input column.*"
                                            rf"'{column}'"):
        predictor.predict({name: inputs[column]})


def test_rows_that_are_not_mappings_are_refused(predictor: FusionPredictor) -> None:
    with pytest.raises(DataError, match=r"row 1 is a str.*\{column: value\}"):
        predictor.predict([{"title": "red"}, "red"])


# -- saved folders in their own library's format -----------------------------------------------


def test_plain_timm_loads_a_saved_image_expert(tmp_path: Path) -> None:
    train = _dataset(9, 3)
    expert = create_expert("timm", "test_resnet", column="photo", labels=CLASSES,
                           pretrained=False, image_size=32).fit(train, **FIT_ARGS)
    folder = expert.save_pretrained(tmp_path / "cnn")
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == CLASSES and model.num_classes == 3
    images: list[PILImage.Image] = _rows(4, 4)["photo"]
    pixels = expert.collate_inputs(images, ["0", "1", "2", "3"], train=False)["pixel_values"]
    own = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    assert torch.equal(torch.stack([own(image) for image in images]), pixels)
    with torch.inference_mode():
        plain = model(pixels).numpy()
    np.testing.assert_allclose(plain, expert.predict_logits(images, progress=False),
                               rtol=0, atol=1e-5)


def test_plain_transformers_loads_a_saved_text_expert(tiny_text_checkpoint: Path,
                                                      tmp_path: Path) -> None:
    expert = _text(tiny_text_checkpoint, "title").fit(_dataset(9, 3), **FIT_ARGS)
    folder = expert.save_pretrained(tmp_path / "title")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == dict(enumerate(CLASSES))
    texts = _rows(4, 4)["title"]
    with torch.inference_mode():
        plain = model(**tokenizer(texts, padding=True, truncation=True,
                                  return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(plain, expert.predict_logits(texts, progress=False),
                               rtol=0, atol=1e-5)


def test_a_mean_pooled_text_expert_is_an_encoder_and_a_head(tiny_text_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), CLASSES, column="title", pooling="mean")
    folder = expert.save_pretrained(tmp_path / "title")
    encoder = AutoModel.from_pretrained(folder).eval()
    head = load_file(str(folder / "classifier.safetensors"))
    texts = _rows(4, 4)["title"]
    tokens = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1)
        plain = (pooled @ head["weight"].T + head["bias"]).numpy()
    np.testing.assert_allclose(plain, expert.predict_logits(texts, progress=False),
                               rtol=0, atol=1e-5)
