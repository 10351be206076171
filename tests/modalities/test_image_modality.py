"""The image modality at load time: paths resolved and checked, every image decoded once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from ensemble.exceptions import InvalidImageError
from ensemble.modalities import ColumnContext, get_modality, to_rgb_image, verify_image

IMAGE = get_modality("image")


def _png(path: Path, colour: tuple[int, int, int] = (1, 2, 3)) -> Path:
    PILImage.new("RGB", (4, 4), colour).save(path)
    return path


def _bytes(colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_verify_image_accepts_paths_bytes_and_dicts_and_skips_urls(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png")
    for stored in (str(path), path, _bytes(), {"bytes": _bytes(), "path": None},
                   {"bytes": None, "path": str(path)}, {"bytes": None, "path": "https://x/y"}):
        verify_image(stored, where="row 0 of split 'train'")


@pytest.mark.parametrize(("payload", "what"), [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image file"),
    (_bytes()[:-30], "image file"),
    (b"GIF89a", "image file"),
])
def test_verify_image_names_the_place_file_and_fix(tmp_path: Path, payload: bytes,
                                                   what: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(InvalidImageError, match=(
            rf"row 3 of split 'test': {what} '.*bad\.png' cannot be read .*corrupt.*None")):
        verify_image({"bytes": None, "path": str(path)}, where="row 3 of split 'test'")
    with pytest.raises(InvalidImageError, match=r"row 3 of split 'test': image bytes"):
        verify_image(payload, where="row 3 of split 'test'")


def test_prepare_column_resolves_paths_against_the_base_dir(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", (7, 7, 7))
    plain = Dataset.from_dict({"photo": ["a.png", None], "other": [1, 2]})
    context = ColumnContext(source="photo", base_dir=tmp_path)
    ds = IMAGE.prepare_column(plain, "photo", "train", context)
    assert ds.column_names == ["photo", "other"] and isinstance(ds.features["photo"], Image)
    IMAGE.check_column(ds, "photo", "train", context)
    assert ds[0]["photo"].getpixel((0, 0)) == (7, 7, 7) and ds[1]["photo"] is None
    stored = Dataset.from_dict({"photo": [{"bytes": None, "path": "a.png"}]},
                               features=Features({"photo": Image(decode=False)}))
    ds = IMAGE.prepare_column(stored, "photo", "train", context)
    assert ds.features["photo"].decode
    assert ds.cast_column("photo", Image(decode=False))[0]["photo"]["path"] == str(
        tmp_path / "a.png")


def test_prepare_column_of_an_empty_column_and_of_numbers() -> None:
    empty = Dataset.from_dict({"photo": [None, None]}, features=Features(
        {"photo": Value("float64")}))
    assert isinstance(IMAGE.prepare_column(empty, "photo", "train").features["photo"], Image)
    numbers = Dataset.from_dict({"photo": [1, 2]})
    with pytest.raises(InvalidImageError, match=r"column 'photo' of split 'train' holds .*int64"):
        IMAGE.prepare_column(numbers, "photo", "train")


def test_check_column_can_skip_decoding(tmp_path: Path) -> None:
    broken = Dataset.from_dict({"photo": [{"bytes": b"junk", "path": None}]},
                               features=Features({"photo": Image()}))
    IMAGE.check_column(broken, "photo", "train", ColumnContext(decode=False))
    with pytest.raises(InvalidImageError, match="row 0 of split 'train': image bytes"):
        IMAGE.check_column(broken, "photo", "train")
    with pytest.raises(InvalidImageError, match="not images"):
        IMAGE.check_column(Dataset.from_dict({"photo": ["x"]}), "photo", "train")


def test_coerce_and_digest() -> None:
    assert IMAGE.coerce(_bytes(), ident="e").mode == "RGB"
    assert to_rgb_image({"bytes": _bytes(), "path": None}, ident="e").size == (4, 4)
    assert IMAGE.digest({"bytes": _bytes(), "path": None}) == _bytes()
    assert IMAGE.digest({"bytes": None, "path": "https://x/y.png"}) == b"https://x/y.png"
