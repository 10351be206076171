"""Hub dataset recipes, parsed and loaded against a tiny local fixture of the same layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ensemble.pipeline import Pipeline
from ensemble.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def _hateful_memes(root: Path) -> None:
    """The original Hateful Memes release: jsonl files + an img/ folder."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {"train.jsonl": range(10000, 10006), "dev_seen.jsonl": range(20000, 20004),
             "test_seen.jsonl": range(30000, 30004)}
    for name, ids in files.items():
        rows = []
        for i, ident in enumerate(ids):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
                root / "img" / f"{ident:05d}.png")
            rows.append({"id": ident, "img": f"img/{ident:05d}.png", "label": i % 2,
                         "text": f"meme caption number {i}"})
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_hateful_memes_recipe_reads_the_release_layout(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _hateful_memes(tmp_path / "data" / "hateful_memes")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(REPO / "recipes" / "hateful_memes.yaml")
    assert "Hub" in recipe.data.note or "hub" in recipe.data.note.lower()
    pipeline = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True)
    dataset = pipeline.dataset
    assert {s: dataset[s].num_rows for s in dataset} == {"train": 6, "validation": 4, "test": 4}
    assert pipeline.class_names == ["not-hateful", "hateful"]
    row = dataset["validation"][1]
    assert row["id"] == "20001" and row["text"] == "meme caption number 1"
    assert row["image"].size == (24, 24)
    assert dataset["validation"].features["label"].int2str(row["label"]) == "hateful"


def test_missing_local_copy_says_what_to_do(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ensemble.exceptions import DataError

    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(REPO / "recipes" / "hateful_memes.yaml",
                         ["data.options.path_or_name=./data/hateful_memes"])
    with pytest.raises(DataError, match="does not exist"):
        _ = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True).dataset


FOOD_CLASSES = ("apple_pie", "ramen", "sushi")
_FOOD_COLOURS = {"train": (200, 40, 40), "test": (40, 40, 200)}


def _upmc_food101(root: Path, n_train: int = 10, n_test: int = 2) -> None:
    """The Kaggle/Hub UPMC Food-101 layout: header-less csv files + images/<split>/<label>/.

    File names repeat between the splits, as in the real data; every train image is red and
    every test image blue, so a row read from the wrong folder shows.
    """
    import csv

    rng = np.random.default_rng(0)
    (root / "texts").mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for label in FOOD_CLASSES:
            folder = root / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.full((20, 20, 3), _FOOD_COLOURS[split], dtype=np.int16)
                pixels[:4, :4] = rng.integers(0, 255, (4, 4, 3))  # unique content per file
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{label}_{i}.jpg")
                text = f'{label.replace("_", " ").title()} Recipe, {split} "no. {i}"'
                rows.append([f"{label}_{i}.jpg", text, label])
        if split == "test":
            rows[1][1] = ""  # a page without a title: a missing text
        with (root / "texts" / f"{split}_titles.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)


def test_food101_recipe_reads_the_kaggle_layout(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Image as ImageFeature

    _upmc_food101(tmp_path / "data" / "food101")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(REPO / "recipes" / "food101.yaml")
    assert "Kaggle" in recipe.data.note
    assert recipe.experts["image"].options["image_size"] == 224
    assert recipe.experts["text"].options["max_length"] == 128
    dataset = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True).dataset
    sizes = {s: dataset[s].num_rows for s in dataset}
    assert list(sizes) == ["train", "validation", "test"]
    assert sizes["train"] + sizes["validation"] == 30 and sizes["test"] == 6
    assert sizes["validation"] == 3  # the recipe's validation_size: 10% of train
    assert Pipeline(recipe, run_dir=tmp_path / "run", quiet=True).class_names == list(
        FOOD_CLASSES)
    # stratified: every class keeps training rows and reaches the validation split
    for split in ("train", "validation"):
        assert set(dataset[split]["label"]) == {0, 1, 2}
    test = dataset["test"]
    assert test["text"][0] == 'Apple Pie Recipe, test "no. 0"' and test["text"][1] is None
    assert test.features["label"].int2str(test["label"][5]) == "sushi"
    paths = test.cast_column("image", ImageFeature(decode=False))["image"]
    assert paths[5]["path"].endswith("images/test/sushi/sushi_1.jpg")
    image = test[5]["image"]
    assert image.size == (20, 20)
    assert np.abs(np.asarray(image)[10, 10].astype(int) - _FOOD_COLOURS["test"]).max() < 12
    train_pixel = np.asarray(dataset["validation"][0]["image"])[10, 10].astype(int)
    assert np.abs(train_pixel - _FOOD_COLOURS["train"]).max() < 12
    ids = [i for s in dataset for i in dataset[s]["id"]]
    assert len(set(ids)) == 36  # unique although file names repeat across splits
    again = Pipeline(load_recipe(REPO / "recipes" / "food101.yaml"), run_dir=tmp_path / "run",
                     quiet=True).dataset
    assert list(again["validation"]["id"]) == list(dataset["validation"]["id"])  # seeded


MINDS14_INTENTS = ["abroad", "address", "app_error", "atm_limit", "balance", "business_loan",
                   "card_issues", "cash_deposit", "direct_debit", "freeze",
                   "high_value_payment", "joint_account", "latest_transactions", "pay_bill"]


def _minds14(root: Path, per_intent: int = 4) -> None:
    """The Hub's MInDS-14 parquet layout: <locale>/train-00000-of-00001.parquet with path,
    audio (8 kHz WAV bytes), transcription, english_transcription, intent_class, lang_id."""
    import io

    import soundfile as sf
    from datasets import Audio, ClassLabel, Dataset

    for locale_id, locale in enumerate(("en-US", "en-AU", "en-GB")):
        rows: dict[str, list] = {k: [] for k in ("path", "audio", "transcription",
                                                  "english_transcription", "intent_class",
                                                  "lang_id")}
        for intent_id, intent in enumerate(MINDS14_INTENTS):
            for i in range(per_intent):
                buffer = io.BytesIO()
                t = np.arange(800) / 8000
                pitch = 200 + 50 * intent_id + 7 * locale_id + i
                sf.write(buffer, 0.3 * np.sin(2 * np.pi * pitch * t), 8000, format="WAV",
                         subtype="PCM_16")
                name = f"{locale}~{intent.upper()}/{locale_id}{intent_id:02d}{i}.wav"
                rows["path"].append(f"/root/.cache/minds14/{name}")
                rows["audio"].append({"bytes": buffer.getvalue(), "path": name})
                rows["transcription"].append(f"{locale} caller {i}: i need help with "
                                             f"{intent.replace('_', ' ')}")
                rows["english_transcription"].append(rows["transcription"][-1])
                rows["intent_class"].append(intent_id)
                rows["lang_id"].append(locale_id)
        table = Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=8000))
        table = table.cast_column("intent_class", ClassLabel(names=MINDS14_INTENTS))
        (root / locale).mkdir(parents=True)
        table.to_parquet(str(root / locale / "train-00000-of-00001.parquet"))


def test_minds14_recipe_reads_the_hub_parquet_layout(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Audio

    from ensemble.modalities import to_waveform

    _minds14(tmp_path / "data" / "minds14")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(REPO / "recipes" / "minds14.yaml")
    assert "Hub" in recipe.data.note
    assert recipe.experts["audio"].type == "transformers-audio"
    assert recipe.experts["audio"].checkpoint == "facebook/wav2vec2-base"
    pipeline = Pipeline(recipe, run_dir=tmp_path / "run", quiet=True)
    dataset = pipeline.dataset
    sizes = {s: dataset[s].num_rows for s in dataset}
    assert list(sizes) == ["train", "validation", "test"]
    assert sizes["train"] + sizes["validation"] == 112 and sizes["test"] == 56
    assert pipeline.class_names == MINDS14_INTENTS
    test = dataset["test"]
    assert test.features["audio"] == Audio(decode=False)
    assert test[0]["transcription"] == "en-GB caller 0: i need help with abroad"
    assert test.features["label"].int2str(test[-1]["label"]) == "pay_bill"
    clip = to_waveform(test[0]["audio"], ident="x", sampling_rate=16000)
    assert clip["array"].shape == (1600,)  # 0.1 s at 8 kHz, resampled to 16 kHz
    assert all(dataset["validation"].features["label"].int2str(v) in MINDS14_INTENTS
               for v in dataset["validation"]["label"])
    assert len(set(dataset["validation"]["label"])) == 14  # stratified: every intent
