"""One table of bad datasets through ``load_multimodal`` and through ``ensemble evaluate
--bundle ... --data ...``.

Each case builds a small dataset of its own (csv files and PNGs, or an in-memory
``DatasetDict``) and either loads (and its result is checked) or raises a typed ``ensemble``
error (the CLI: exits with that error's status and one line on stderr) whose message names
the bad value and the fix. Unit-level cases live in tests/data and tests/modalities; the
battery of bad predictor inputs is tests/reliability/test_bad_input_battery.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from _helpers import tiny_predictor
from datasets import Dataset, DatasetDict
from PIL import Image

from ensemble.cli import main
from ensemble.data import load_multimodal
from ensemble.exceptions import (
    ConfigError,
    DataError,
    EnsembleError,
    InvalidAudioError,
    InvalidImageError,
    InvalidTabularError,
    InvalidTextError,
    LabelError,
    UnknownNameError,
)

SPLITS = ("train", "validation", "test")


@dataclass
class Env:
    """A working directory holding ``data/shapes`` (csv splits over PNGs) for the cases."""

    root: Path
    capsys: pytest.CaptureFixture[str]
    bundle: Path | None = None

    @property
    def shapes(self) -> Path:
        return self.root / "data" / "shapes"

    def write(self, split: str, rows: list[dict[str, Any]]) -> None:
        header = list(rows[0])
        lines = [",".join(header)] + [
            ",".join("" if r[h] is None else str(r[h]) for h in header) for r in rows]
        (self.shapes / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def image(self, split: str, row: int, data: bytes) -> None:
        (self.shapes / split / f"{row:03d}.png").write_bytes(data)

    def load(self, **options: Any) -> Any:
        options.setdefault("data_files", {s: f"{s}.csv" for s in SPLITS})
        options.setdefault("image_column", "file") if "inputs" not in options else None
        options.setdefault("text_column", "caption") if "inputs" not in options else None
        options.setdefault("label_column", "shape")
        return load_multimodal(options.pop("path", "data/shapes"), **options,
                               cache_dir=str(self.root / "hf-cache"))

    def cli(self, *argv: str) -> tuple[int, str]:
        assert self.bundle is not None
        self.capsys.readouterr()
        code = main(["evaluate", "--bundle", str(self.bundle), "-q", *argv])
        return code, self.capsys.readouterr().err


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _rows(split: str, n: int) -> list[dict[str, Any]]:
    return [{"file": f"{split}/{i:03d}.png", "caption": f"{split} shape {i}",
             "shape": ["circle", "square"][i % 2], "price": 10 + i, "year": 2000 + i,
             "description": f"a {['round', 'boxy'][i % 2]} thing number {i}"}
            for i in range(n)]


def _setup(root: Path) -> None:
    shapes = root / "data" / "shapes"
    for split, n in zip(SPLITS, (8, 4, 4), strict=True):
        (shapes / split).mkdir(parents=True)
        for i in range(n):
            (shapes / split / f"{i:03d}.png").write_bytes(_png((20 * i, 40, 200)))
        Env(root, None).write(split, _rows(split, n))  # type: ignore[arg-type]


def _relabel(e: Env, split: str, row: int, label: str) -> None:
    rows = _rows(split, 8 if split == "train" else 4)
    rows[row]["shape"] = label
    e.write(split, rows)


def _set(e: Env, split: str, row: int, **values: Any) -> None:
    rows = _rows(split, 8 if split == "train" else 4)
    rows[row].update(values)
    e.write(split, rows)


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Env], Any]
    #: None: the case works; an exception type; or a CLI exit status.
    expect: type[EnsembleError] | int | None
    #: Texts the message must contain: the bad value (and where), then the fix.
    names: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    cli: bool = False


def _wav(samples: np.ndarray, subtype: str = "PCM_16") -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _with_sounds(bad: dict[tuple[str, int], bytes] | None = None) -> Callable[[Env], None]:
    """Add a ``sound`` column of WAV files (``<split>/<row>.wav``) to every split's csv;
    ``bad`` replaces some files' bytes."""
    def prepare(e: Env) -> None:
        for split, n in zip(SPLITS, (8, 4, 4), strict=True):
            rows = _rows(split, n)
            for i, row in enumerate(rows):
                tone = np.sin(np.arange(1600) * (0.05 + 0.1 * (i % 2))).astype(np.float32)
                data = (bad or {}).get((split, i), _wav(tone * (1 + i) / 10))
                (e.shapes / split / f"{i:03d}.wav").write_bytes(data)
                row["sound"] = f"{split}/{i:03d}.wav"
            e.write(split, rows)

    return prepare


SOUNDS = {"sound": "audio", "caption": "text"}


def _prepared(prepare: Callable[[Env], None], run: Callable[[Env], Any]) -> Callable[[Env], Any]:
    def both(e: Env) -> Any:
        prepare(e)
        return run(e)

    return both


NAMED = {"photo": {"modality": "image", "column": "file"}, "title": {"modality": "text",
         "column": "caption"}, "meta": ["price", "year"]}

CASES = [
    # -- images ------------------------------------------------------------------------------
    Case("random-bytes-saved-as-png", _prepared(
        lambda e: e.image("train", 5, np.random.default_rng(1).bytes(300)), lambda e: e.load()),
        InvalidImageError, ("row 5 of split 'train'", "train/005.png", "corrupt",
                            "None to mark the image as missing")),
    Case("truncated-png-in-validation", _prepared(
        lambda e: e.image("validation", 2, _noise_png()[:500]), lambda e: e.load()),
        InvalidImageError, ("split 'validation'", "validation/002.png", "truncated")),
    Case("image-file-missing", _prepared(
        lambda e: (e.shapes / "test" / "003.png").unlink(), lambda e: e.load()),
        InvalidImageError, ("row 3 of split 'test'", "test/003.png", "not found",
                            "--image-root")),
    Case("image-declared-on-sentences", lambda e: e.load(inputs={"description": "image"}),
         InvalidImageError, ("'description'", "'a round thing number 0'",
                             "Declare it as a text input")),
    Case("image-declared-on-numbers", lambda e: e.load(image_column="price"),
         InvalidImageError, ("'price'", "int64", "--image-column")),
    # -- audio -------------------------------------------------------------------------------
    Case("audio-declared-on-image-files", lambda e: e.load(inputs={"file": "audio"}),
         InvalidAudioError, ("row 0 of split 'train'", "train/000.png", "cannot be read",
                             "None to mark the audio as missing")),
    Case("audio-declared-on-sentences", lambda e: e.load(inputs={"description": "audio"}),
         InvalidAudioError, ("'description'", "'a round thing number 0'",
                             "Declare it as a text input")),
    Case("truncated-wav-in-test", _prepared(
        _with_sounds({("test", 2): _wav(np.zeros(1600, np.float32))[:1000]}),
        lambda e: e.load(inputs=SOUNDS)),
        InvalidAudioError, ("row 2 of split 'test'", "test/002.wav", "truncated",
                            "replace the file")),
    Case("nan-samples-in-a-float-wav", _prepared(
        _with_sounds({("validation", 1): _wav(np.array([0.1, np.nan] * 100, np.float32),
                                              subtype="FLOAT")}),
        lambda e: e.load(inputs=SOUNDS)),
        InvalidAudioError, ("row 1 of split 'validation'", "validation/001.wav",
                            "NaN or infinite samples")),
    Case("audio-files", _prepared(_with_sounds(), lambda e: e.load(inputs=SOUNDS)), None,
         check=lambda ds: ds["test"].features["sound"] == datasets.Audio(decode=False)),
    # -- texts -------------------------------------------------------------------------------
    Case("text-declared-on-numbers", lambda e: e.load(inputs={"year": "text"}),
         InvalidTextError, ("'year'", "not text", "tabular input")),
    Case("text-declared-on-image-paths", lambda e: e.load(inputs={"file": "text"}),
         InvalidTextError, ("'file'", "'train/000.png'", "image input")),
    Case("text-blank", _prepared(lambda e: _set(e, "train", 1, caption="   "),
                                 lambda e: e.load()),
         InvalidTextError, ("row 1 of split 'train'", "empty text", "None")),
    # -- tabular -----------------------------------------------------------------------------
    Case("word-in-a-numeric-column", _prepared(lambda e: _set(e, "test", 1, price="cheap"),
                                               lambda e: e.load(inputs=NAMED)),
         DataError, ("'price'", "'cheap'", "split 'test'", "row 1", "Fix the value")),
    Case("word-in-a-numeric-column-one-file", lambda e: load_multimodal(
        DatasetDict(train=Dataset.from_dict({"price": ["1", "2", "3", "lots"],
                                             "shape": ["a", "b", "a", "b"]})),
        inputs={"meta": ["price"]}, label_column="shape"),
        InvalidTabularError, ("'price'", "'lots'", "row 3 of split 'train'", "categorical")),
    Case("infinite-number", lambda e: load_multimodal(
        DatasetDict(train=Dataset.from_dict({"w": [1.0, float("inf")], "y": ["a", "b"]})),
        inputs={"meta": ["w"]}, label_column="y"),
        InvalidTabularError, ("'w'", "inf", "finite number")),
    Case("tabular-group-of-images", lambda e: load_multimodal(
        DatasetDict(train=Dataset.from_dict({"p": [Image.new("RGB", (2, 2))] * 2,
                                             "y": ["a", "b"]})),
        inputs={"meta": ["p"]}, label_column="y"),
        InvalidTabularError, ("'p'", "Image", "its own input")),
    # -- declarations ------------------------------------------------------------------------
    Case("declared-column-absent", lambda e: e.load(inputs={"captoin": "text"}),
         DataError, ("'captoin'", "split 'train'", "available columns",
                     "Did you mean 'caption'", "inputs=")),
    Case("legacy-column-absent", lambda e: e.load(text_column="captions"),
         DataError, ("'captions'", "available columns", "Did you mean 'caption'",
                     "text_column=", "--text-column")),
    Case("label-column-absent", lambda e: e.load(label_column="kind"),
         DataError, ("'kind'", "label_column=", "--label-column")),
    Case("unknown-modality", lambda e: e.load(inputs={"file": "imgae"}),
         UnknownNameError, ("'imgae'", "Did you mean 'image'")),
    Case("same-input-twice", lambda e: e.load(inputs=[("caption", "text"),
                                                      ("caption", "image")]),
         ConfigError, ("'caption'", "declared twice")),
    Case("input-named-label", lambda e: e.load(inputs={"label": "text"}),
         ConfigError, ("'label'", "reserved", "label_column=")),
    Case("input-reads-the-label", lambda e: e.load(inputs={"meta": ["price", "shape"]}),
         ConfigError, ("'shape'", "the label column")),
    Case("inputs-and-image-column", lambda e: e.load(inputs={"caption": "text"},
                                                     image_column="file"),
         ConfigError, ("either inputs",)),
    # -- labels ------------------------------------------------------------------------------
    Case("label-only-in-test", _prepared(lambda e: _relabel(e, "test", 2, "triangle"),
                                         lambda e: e.load()),
         LabelError, ("'triangle'", "split 'test', row 2", "class_names=",
                      "allow_unseen_labels=True")),
    Case("label-only-in-test-allowed", _prepared(
        lambda e: _relabel(e, "test", 2, "triangle"),
        lambda e: e.load(allow_unseen_labels=True)), None,
        check=lambda ds: ds["train"].features["label"].names == ["circle", "square",
                                                                   "triangle"]),
    Case("label-case-typo", _prepared(lambda e: _relabel(e, "validation", 1, "Circle"),
                                      lambda e: e.load()),
         LabelError, ("'Circle'", "'circle'", "split 'validation', row 1", "spelling")),
    Case("label-empty-cell", _prepared(lambda e: _set(e, "train", 4, shape=None),
                                       lambda e: e.load()),
         LabelError, ("split 'train', row 4", "no label", "fill it in")),
    Case("duplicate-ids", _prepared(lambda e: _set(e, "test", 0, caption="validation shape 0",
                                                   file="validation/000.png"),
                                    lambda e: e.load(id_column="caption")),
         DataError, ("'validation shape 0'", "id_column=None")),
    # -- paths and layout --------------------------------------------------------------------
    Case("typo-in-a-local-path", lambda e: e.load(path="data/shapess"),
         DataError, ("'data/shapess'", "does not exist", "Did you mean 'data/shapes'",
                     "not tried as a Hub")),
    Case("ambiguous-hub-name", lambda e: e.load(path="someone/shapes", data_files=None),
         DataError, ("'someone/shapes'", "neither a local file or folder", "Hub")),
    Case("headerless-csv-with-extra-columns", lambda e: e.load(
        column_names=["file", "caption", "shape"], data_files={"train": "train.csv"}),
        DataError, ("more columns than names", "column_names=")),
    Case("validation-size-with-a-validation-split", lambda e: e.load(validation_size=0.2),
         ConfigError, ("already has a 'validation' split", "drop validation_size")),
    # -- what works --------------------------------------------------------------------------
    Case("text-only", lambda e: e.load(image_column=None), None,
         check=lambda ds: ds["test"].column_names[:3] == ["id", "text", "label"]),
    Case("named-inputs", lambda e: e.load(inputs=NAMED), None,
         check=lambda ds: ds["train"].column_names[:5] == ["id", "label", "photo", "title",
                                                           "meta"]),
    # -- the same through the CLI: exit 4 (bad data), one line naming the culprit ------------
    Case("cli-corrupt-image", _prepared(
        lambda e: e.image("test", 1, b"\x89PNG\r\n\x1a\nnot really"),
        lambda e: e.cli("--data", "data/shapes", "--image-column", "file", "--text-column",
                        "caption", "--label-column", "shape", "--data-option",
                        "data_files={train: train.csv, validation: validation.csv, "
                        "test: test.csv}")),
        4, ("row 1 of split 'test'", "test/001.png"), cli=True),
    Case("cli-column-absent", lambda e: e.cli(
        "--data", "data/shapes/test.csv", "--split", "train", "--image-column", "file",
        "--text-column", "captions", "--label-column", "shape"),
        4, ("'captions'", "--text-column"), cli=True),
    Case("cli-typo-in-the-data-path", lambda e: e.cli("--data", "data/shapess"),
         4, ("'data/shapess'", "does not exist"), cli=True),
]


@pytest.fixture(scope="module")
def bundle(tiny_text_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_predictor(tiny_text_checkpoint).save(tmp_path_factory.mktemp("b") / "bundle")


def test_the_battery_covers_the_public_api_and_the_cli() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cli for c in CASES) >= 3


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    hub: list[str] = []

    def offline(path: str, *args: Any, **kwargs: Any) -> Any:
        if "/" in str(path) and not Path(path).exists():
            hub.append(path)
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")
        return load_dataset(path, *args, **kwargs)

    load_dataset = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", offline)
    env = Env(tmp_path, capsys, request.getfixturevalue("bundle") if case.cli else None)
    if case.expect is None:
        result = case.run(env)
        assert case.check is not None and case.check(result)
    elif isinstance(case.expect, int):
        code, stderr = case.run(env)
        assert code == case.expect, stderr
        # the error is the last line, and one line (progress bars may come before it)
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("ensemble evaluate: error: ") and "Traceback" not in stderr
        for text in case.names:
            assert text in last, (text, stderr)
    else:
        with pytest.raises(case.expect) as info:
            case.run(env)
        for text in case.names:
            assert text in str(info.value), (text, str(info.value))
    assert hub in ([], ["someone/shapes"])  # a local-looking path never reaches the Hub
