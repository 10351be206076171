"""Raw inputs to clean RGB images and strings, with errors that name the example."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ensemble.exceptions import InvalidImageError, InvalidTextError
from ensemble.experts import ImageExpert, TextExpert
from ensemble.modalities import image as image_modality
from ensemble.modalities.image import to_rgb_image
from ensemble.modalities.text import to_text

WHITE = (255, 255, 255)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png(size: int = 32) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return _png_bytes(Image.fromarray(pixels))


# -- unreadable images ----------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes, name: str = "img.png") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "does-not-exist.png",
        lambda tmp: _write(tmp, b""),
        lambda tmp: _write(tmp, _noise_png()[:300]),
        lambda tmp: _write(tmp, b"this is not an image at all\n" * 10, "notes.jpg"),
        lambda tmp: str(_write(tmp, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)),
        lambda tmp: _noise_png()[:300],
        lambda tmp: b"GIF89a not really",
        lambda tmp: {"bytes": None, "path": None},
        lambda tmp: 42,
        lambda tmp: np.zeros((5, 5, 7)),
        lambda tmp: np.full((4, 4), np.nan),
    ],
    ids=["missing-file", "zero-byte-file", "truncated-png", "text-file", "bad-png-header",
         "truncated-png-bytes", "non-image-bytes", "empty-dict", "int", "bad-array-shape",
         "nan-array"],
)
def test_unreadable_image_raises_and_names_the_example(tmp_path: Path, make) -> None:
    with pytest.raises(InvalidImageError, match="'row-7'"):
        to_rgb_image(make(tmp_path), "row-7")


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_modality, "MAX_IMAGE_PIXELS", 32 * 32 - 1)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    path = _write(tmp_path, _noise_png(32))
    with pytest.raises(InvalidImageError, match=r"'huge'.*1023 pixels"):
        to_rgb_image(path, "huge")
    assert decoded == [], "a huge file must not be decoded before it is refused"
    with pytest.raises(InvalidImageError, match="'huge-array'"):
        to_rgb_image(np.zeros((32, 32, 3), dtype=np.uint8), "huge-array")
    assert to_rgb_image(np.zeros((31, 33, 3), dtype=np.uint8), "fits").size == (33, 31)


# -- colour modes ---------------------------------------------------------------------------


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent -> white
    rgba[0, 1] = (200, 0, 0, 255)  # opaque -> unchanged
    rgba[1, 0] = (0, 0, 0, 128)  # half transparent black -> mid grey
    out = _pixels(to_rgb_image(Image.fromarray(rgba, mode="RGBA"), "x"))
    assert tuple(out[0, 0]) == WHITE
    assert tuple(out[0, 1]) == (200, 0, 0)
    assert 120 <= out[1, 0, 0] <= 135
    from_file = _pixels(to_rgb_image(_png_bytes(Image.fromarray(rgba, mode="RGBA")), "x"))
    np.testing.assert_array_equal(from_file, out)


def test_la_is_composited_on_white() -> None:
    image = Image.new("LA", (1, 1), (0, 0))
    assert tuple(_pixels(to_rgb_image(image, "x"))[0, 0]) == WHITE


def test_palette_image_with_transparency_becomes_white_where_transparent() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    for source in (image, _png_bytes(image)):
        out = _pixels(to_rgb_image(source, "x"))
        assert tuple(out[0, 0]) == WHITE
        assert tuple(out[0, 1]) == (255, 0, 0)


def test_grey_cmyk_and_sixteen_bit_images_become_rgb(tmp_path: Path) -> None:
    assert tuple(_pixels(to_rgb_image(Image.new("L", (3, 2), 77), "x"))[1, 2]) == (77, 77, 77)
    assert tuple(_pixels(to_rgb_image(Image.new("1", (3, 2), 1), "x"))[0, 0]) == WHITE
    cmyk = _pixels(to_rgb_image(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "x"))
    assert tuple(cmyk[0, 0]) == (255, 0, 0)
    deep = np.array([[0, 65535], [257 * 100, 300]], dtype=np.uint16)
    sixteen = Image.fromarray(deep)
    assert sixteen.mode.startswith("I")
    png = _write(tmp_path, _png_bytes(sixteen), "deep.png")
    for source in (sixteen, png):
        out = _pixels(to_rgb_image(source, "x"))
        np.testing.assert_array_equal(out[..., 0], [[0, 255], [100, 1]])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_one_pixel_images_of_every_mode_become_rgb(mode: str) -> None:
    out = to_rgb_image(Image.new(mode, (1, 1)), "x")
    assert (out.mode, out.size) == ("RGB", (1, 1))


def test_float_and_uint16_arrays_are_rescaled() -> None:
    floats = np.array([[[0.0, 0.5, 1.0]]])
    assert tuple(_pixels(to_rgb_image(floats, "x"))[0, 0]) == (0, 128, 255)
    assert tuple(_pixels(to_rgb_image(floats.astype(np.float32), "x"))[0, 0]) == (0, 128, 255)
    deep = np.array([[[0, 257 * 128, 65535]]], dtype=np.uint16)
    assert tuple(_pixels(to_rgb_image(deep, "x"))[0, 0]) == (0, 128, 255)
    grey = np.array([[0.25]])
    assert tuple(_pixels(to_rgb_image(grey, "x"))[0, 0]) == (64, 64, 64)
    channels_first = np.zeros((3, 5, 6), dtype=np.uint8)
    assert to_rgb_image(channels_first, "x").size == (6, 5)


def test_one_pixel_image_goes_through_an_image_expert() -> None:
    expert = ImageExpert("test_resnet", ["a", "b"], pretrained=False, image_size=32)
    logits = expert.predict_logits([Image.new("RGBA", (1, 1)), Image.new("I;16", (1, 1))],
                                   progress=False)
    assert logits.shape == (2, 2) and np.isfinite(logits).all()


# -- texts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "   \n\t", b"", 12, ["red"], b"\xff\xfe not utf-8"],
    ids=["empty", "whitespace", "empty-bytes", "int", "list", "bad-utf8"],
)
def test_invalid_text_raises_and_names_the_example(value) -> None:
    with pytest.raises(InvalidTextError, match="'row-3'"):
        to_text(value, "row-3")


def test_valid_text_and_utf8_bytes_pass() -> None:
    assert to_text("red apple", "x") == "red apple"
    assert to_text("café".encode(), "x") == "café"
    assert to_text(bytearray(b"sun"), "x") == "sun"


def test_invalid_text_in_a_batch_names_its_position(tiny_text_checkpoint) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), ["a", "b"])
    with pytest.raises(InvalidTextError, match="'1'"):
        expert.predict_logits(["red", "  "], progress=False)


def test_very_long_text_is_truncated_to_what_the_model_accepts(tiny_text_checkpoint) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), ["a", "b"])
    assert expert.max_length > expert.tokenizer.model_max_length  # 128 > 64 positions
    long_text = " ".join(["red", "apple", "happy", "dog"] * 500)
    logits = expert.predict_logits([long_text, "sun"], progress=False)
    assert logits.shape == (2, 2) and np.isfinite(logits).all()
    short = TextExpert(str(tiny_text_checkpoint), ["a", "b"], max_length=8)
    assert short.predict_logits(long_text, progress=False).shape == (1, 2)
