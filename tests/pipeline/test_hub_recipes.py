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
