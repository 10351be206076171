"""load_emoji offline, on a fake tarball with the real layout (and the real one on request)."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from sklearn.model_selection import train_test_split

from ensemble.data import EMOJI_META_FIELDS, class_names, load_emoji, load_multimodal
from ensemble.data.sources import emoji as emoji_module
from ensemble.exceptions import ConfigError, DataError, DependencyError

# ids per split of the real dataset (sha256 of the newline-joined ids, first 16 hex digits),
# measured before the keywords / meta inputs were added: the splits must never change.
REAL_SPLIT_IDS = {"train": "4cdb299967aee93b", "validation": "94e8e6f896120ce1",
                  "test": "c7e0fe33a306eed8"}
INPUTS = ("image", "text", "keywords", "meta")

FAKE_CATEGORIES = {"Smileys & Emotion": (250, 200, 0), "Animals & Nature": (0, 150, 0),
                   "Flags": (0, 0, 200)}


def _rgba_png(colour: tuple[int, int, int]) -> bytes:
    image = PILImage.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent background
    image.paste((*colour, 255), (16, 16, 48, 48))
    image.putpixel((2, 2), (255, 0, 0, 128))  # half-transparent red
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _fake_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    order = 0
    for c, category in enumerate(FAKE_CATEGORIES):
        for i in range(10):
            order += 1
            code = f"1F{c}{i:02d}"
            entries.append({
                "name": f"{category.upper()} THING {i}", "unified": code,
                "image": f"{code.lower()}.png", "short_names": [f"thing_{c}_{i}"],
                "category": category, "subcategory": f"sub-{c}-{i % 2}",
                "sort_order": 100 - order, "has_img_google": True,
            })
    entries[0]["name"] = ""  # falls back to the first short name
    entries[1].update(texts=[":)", "=)"], text=":)", short_names=["thing_0_1", "smile"],
                      skin_variations={"1F3FB": {}}, non_qualified="1F001-X",
                      added_in="6.0")
    entries[2]["unified"] = "1F002-200D-2640"  # three code points
    entries[3]["added_in"] = None
    entries.append({"name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "unified": "1F3FB",
                    "image": "1f3fb.png", "short_names": ["skin-tone-2"], "category": "Component",
                    "subcategory": "skin-tone", "sort_order": 500, "has_img_google": True})
    entries.append({"name": "NO GOOGLE IMAGE", "unified": "2000", "image": "2000.png",
                    "short_names": ["no_img"], "category": "Flags", "subcategory": "flag",
                    "sort_order": 501, "has_img_google": False})
    entries.append({"name": "FILE MISSING", "unified": "2001", "image": "2001.png",
                    "short_names": ["missing"], "category": "Flags", "subcategory": "flag",
                    "sort_order": 502, "has_img_google": True})
    return entries


def _make_tarball(path: Path, package: dict[str, str] | None = None,
                  entries: list[dict[str, Any]] | None = None) -> Path:
    entries = entries or _fake_entries()
    colours = list(FAKE_CATEGORIES.values())
    with tarfile.open(path, "w:gz") as archive:
        package = package or {"name": "emoji-datasource-google", "version": "16.0.0"}
        _add(archive, "package/package.json", json.dumps(package).encode())
        _add(archive, "package/emoji.json", json.dumps(entries).encode())
        _add(archive, "package/LICENSE", b"The MIT License (MIT)\n")
        for entry in entries:
            if entry["image"] in ("2001.png",):
                continue
            colour = colours[list(FAKE_CATEGORIES).index(entry["category"])] \
                if entry["category"] in FAKE_CATEGORIES else (9, 9, 9)
            _add(archive, f"package/img/google/64/{entry['image']}", _rgba_png(colour))
        _add(archive, "package/img/google/64/../../../../escape.png", _rgba_png((1, 1, 1)))
        _add(archive, "../escape.txt", b"should never be written")
    return path


@pytest.fixture(scope="module")
def fake_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emoji-src")
    return _make_tarball(root / "emoji-datasource-google-16.0.0.tgz")


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory, fake_tarball: Path) -> DatasetDict:
    cache = tmp_path_factory.mktemp("emoji-cache")
    return load_emoji(cache, tarball=fake_tarball)


def test_emoji_columns_rows_and_labels(emoji: DatasetDict) -> None:
    assert list(emoji) == ["train", "validation", "test"]
    assert {s: emoji[s].num_rows for s in emoji} == {"train": 18, "validation": 6, "test": 6}
    train = emoji["train"]
    assert train.column_names == [
        "id", "image", "text", "label", "keywords", "meta", "short_names", "unified"
    ]
    assert class_names(emoji) == sorted(FAKE_CATEGORIES)
    rows = [row for split in emoji.values() for row in split]
    assert {r["unified"] for r in rows} == {e["unified"] for e in _fake_entries()[:30]}
    assert all(r["id"] == r["unified"] for r in rows)  # Component, no-image, missing file dropped
    by_id = {r["id"]: r for r in rows}
    assert by_id["1F001"]["text"] == "smileys & emotion thing 1"  # lower-cased name
    assert by_id["1F000"]["text"] == "thing 0 0"  # empty name -> first short name
    assert by_id["1F201"]["short_names"] == ["thing_2_1"]
    assert by_id["1F201"]["keywords"] == "thing 2 1"


def test_emoji_keywords_and_meta_inputs(emoji: DatasetDict) -> None:
    by_id = {r["id"]: r for split in emoji.values() for r in split}
    assert set(emoji["train"].features["meta"]) == set(EMOJI_META_FIELDS)
    # short names (``_`` -> space) then the emoticons, each once
    assert by_id["1F001"]["keywords"] == "thing 0 1 smile :) =)"
    assert by_id["1F001"]["meta"] == {"code_points": 1.0, "first_code_point": float(0x1F001),
                                      "skin_tones": 1.0, "added_in": 6.0,
                                      "non_qualified": 1.0}
    assert by_id["1F002-200D-2640"]["meta"]["code_points"] == 3.0
    assert by_id["1F002-200D-2640"]["meta"]["first_code_point"] == float(0x1F002)
    assert by_id["1F003"]["meta"]["added_in"] is None  # a single missing field stays None
    # the inputs load as named inputs: image, two texts, a tabular group
    ds = load_multimodal(emoji, inputs={"image": "image", "text": "text", "keywords": "text",
                                        "meta": "tabular"}, id_column="id")
    assert ds["test"]["id"] == emoji["test"]["id"]
    assert ds["train"].features["meta"] == emoji["train"].features["meta"]


def test_no_input_reads_category_subcategory_or_sort_order(tmp_path: Path) -> None:
    """Changing an emoji's subcategory and sort order changes none of its inputs; no input
    holds a category or subcategory name."""
    entries = _fake_entries()
    other = [dict(e, subcategory=f"other-{i}", sort_order=1000 - e["sort_order"])
             for i, e in enumerate(entries)]
    first = load_emoji(tmp_path / "a", tarball=_make_tarball(tmp_path / "a.tgz",
                                                             entries=entries))
    second = load_emoji(tmp_path / "b", tarball=_make_tarball(tmp_path / "b.tgz",
                                                              entries=other))

    def inputs(ds: DatasetDict) -> dict[str, tuple[Any, ...]]:
        raw = {s: d.cast_column("image", Image(decode=False)) for s, d in ds.items()}
        return {r["id"]: tuple(json.dumps(r[c], sort_keys=True, default=str) for c in INPUTS)
                for d in raw.values() for r in d}

    assert inputs(first) == inputs(second)
    words = {e["subcategory"].lower() for e in entries} | {"smileys & emotion",
                                                           "animals & nature", "flags"}
    for split in first.values():
        assert "subcategory" not in split.column_names and "sort_order" not in str(
            split.features)
        for row in split.remove_columns(["image"]):
            for column in ("keywords", "meta"):
                assert not any(w in json.dumps(row[column]).lower() for w in words), row


def test_emoji_subcategory_label_space(
    tmp_path: Path, fake_tarball: Path, emoji: DatasetDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """label="subcategory": the fine label, the category as a coarse text column, the same
    splits; the cache built for categories serves it without a rebuild."""
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path))
    load_emoji(tarball=fake_tarball)
    monkeypatch.setattr(emoji_module, "build_emoji", lambda *a, **k: pytest.fail("rebuilt"))
    fine = load_emoji(label="subcategory")
    assert class_names(fine) == [f"sub-{c}-{j}" for c in range(3) for j in range(2)]
    assert fine["train"].column_names[-1] == "category"
    assert "subcategory" not in fine["train"].column_names
    for split in emoji:
        assert fine[split]["id"] == emoji[split]["id"]
    by_id = {r["id"]: r for split in fine.values() for r in split.remove_columns("image")}
    assert class_names(fine)[by_id["1F001"]["label"]] == "sub-0-1"
    assert by_id["1F001"]["category"] == "Smileys & Emotion"
    coarse = {r["id"]: r for split in emoji.values() for r in split.remove_columns("image")}
    assert all(by_id[i]["text"] == coarse[i]["text"] and by_id[i]["meta"] == coarse[i]["meta"]
               for i in by_id)  # the inputs are the category dataset's
    # each fake subcategory has 5 emoji: min_class_rows=6 keeps none
    with pytest.raises(DataError, match=r"min_class_rows"):
        load_emoji(label="subcategory", min_class_rows=6)
    with pytest.raises(ConfigError, match=r"'colour'.*'category', 'subcategory'"):
        load_emoji(label="colour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"min_class_rows.*0"):
        load_emoji(label="subcategory", min_class_rows=0)


def test_emoji_images_are_rgb_on_white(emoji: DatasetDict) -> None:
    names = class_names(emoji)
    for row in emoji["test"]:
        image = row["image"]
        assert image.mode == "RGB" and image.size == (64, 64)
        assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
        assert image.getpixel((32, 32)) == FAKE_CATEGORIES[names[row["label"]]]
        red = image.getpixel((2, 2))  # 50% red over white
        assert red[0] == 255 and 120 <= red[1] <= 135 and red[1] == red[2]


def test_emoji_splits_are_stratified_and_as_documented(emoji: DatasetDict) -> None:
    for split, per_class in (("train", 6), ("validation", 2), ("test", 2)):
        assert set(collections.Counter(emoji[split]["label"]).values()) == {per_class}
    # re-derive the documented recipe: sort by sort_order, 60/20/20 stratified, seed 0
    rows = sorted(_fake_entries()[:30], key=lambda e: e["sort_order"])
    names = sorted(FAKE_CATEGORIES)
    y = np.array([names.index(e["category"]) for e in rows])
    train, temp = train_test_split(np.arange(30), test_size=0.4, stratify=y, random_state=0)
    val, test = train_test_split(temp, test_size=0.5, stratify=y[temp], random_state=0)
    for split, idx in (("train", train), ("validation", val), ("test", test)):
        assert emoji[split]["id"] == [rows[i]["unified"] for i in sorted(idx)]


def test_emoji_cache_is_reused_and_deterministic(
    tmp_path: Path, fake_tarball: Path, emoji: DatasetDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path))
    first = load_emoji(tarball=fake_tarball)
    assert (tmp_path / "datasets" / "emoji-google-16.0.0-64px" / "dataset_dict.json").is_file()
    for split in emoji:
        assert first[split]["id"] == emoji[split]["id"]

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(emoji_module, "build_emoji", boom)
    second = load_emoji()  # from $ENSEMBLE_CACHE, no tarball, no npm needed
    assert second["validation"]["id"] == emoji["validation"]["id"]
    with pytest.raises(AssertionError, match="cache"):
        load_emoji(overwrite=True, tarball=fake_tarball)
    # a cache written by an older builder version (without subcategories) is rebuilt
    meta_file = tmp_path / "datasets" / "emoji-google-16.0.0-64px" / "ensemble_dataset.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "builder_version": 2}))
    with pytest.raises(AssertionError, match="cache"):
        load_emoji()


def test_emoji_image_size_and_safe_extraction(tmp_path: Path, fake_tarball: Path) -> None:
    cwd = Path.cwd()
    ds = load_emoji(tmp_path / "cache", image_size=32, tarball=fake_tarball)
    assert ds["train"][0]["image"].size == (32, 32)
    assert not (tmp_path / "escape.txt").exists() and not (cwd / "escape.txt").exists()
    assert not list(tmp_path.rglob("escape*"))


def test_emoji_without_npm_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match=r"Node\.js.*tarball="):
        load_emoji(tmp_path)


def test_emoji_bad_tarballs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_emoji(tmp_path, tarball=tmp_path / "missing.tgz")
    wrong = _make_tarball(tmp_path / "apple.tgz", {"name": "emoji-datasource-apple",
                                                   "version": "16.0.0"})
    with pytest.raises(DataError, match=r"expected emoji-datasource-google@16\.0\.0"):
        load_emoji(tmp_path, tarball=wrong)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable"):
        load_emoji(tmp_path, tarball=junk)
    with pytest.raises(ConfigError, match="image_size"):
        load_emoji(tmp_path, image_size=0)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ENSEMBLE_NETWORK_TESTS") != "1" or shutil.which("npm") is None,
    reason="downloads from the npm registry; set ENSEMBLE_NETWORK_TESTS=1",
)
def test_real_emoji_dataset(tmp_path: Path) -> None:
    ds = load_emoji(tmp_path)
    assert {s: ds[s].num_rows for s in ds} == {"train": 1143, "validation": 381, "test": 382}
    assert len(class_names(ds)) == 9 and "Component" not in class_names(ds)
    for split, digest in REAL_SPLIT_IDS.items():  # the splits of builder version 1
        joined = "\n".join(ds[split]["id"]).encode()
        assert hashlib.sha256(joined).hexdigest()[:16] == digest, split
    assert all(r["keywords"] for r in ds["train"].remove_columns("image"))
