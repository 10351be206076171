"""One table of bad inputs across the public API and the CLI.

Each case either works (and its result is checked) or raises a typed ``ensemble`` error (or
exits with the CLI status of one) whose message names the culprit; no case leaves a partial
artifact. Closely related unit-level cases live next to their modules and are not repeated:
tests/experts/test_inputs.py (every image mode, arrays, bytes), tests/test_logits.py (NaN,
shapes, duplicate ids of a LogitSet), tests/combiners/test_combiners_errors.py (labels
outside the classes, NaN/inf and zero rows at fit time), tests/pipeline/test_recipe.py and
test_cli.py (recipe keys and values, ``--set``), tests/pipeline/test_predictor.py (empty and
mismatched predictor inputs, damaged bundles).
"""

from __future__ import annotations

import copy
import io
import json
import resource
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from _cli_runner import SYNTHETIC
from _helpers import debris, resign, tiny_predictor
from _tiny_data import CLASSES, TONES, make_audio_dataset, make_dataset
from datasets import Dataset
from PIL import Image

from ensemble import FusionPredictor
from ensemble.cli import main
from ensemble.combiners import create_combiner
from ensemble.exceptions import (
    AlignmentError,
    ClassMismatchError,
    DataError,
    EnsembleError,
    InvalidAudioError,
    InvalidImageError,
    InvalidLogitsError,
    InvalidTextError,
    LabelError,
)
from ensemble.experts import ImageExpert
from ensemble.labels import LabelSpace


@dataclass
class Env:
    """What a case may use: a fitted predictor, its saved bundle, a folder for the inputs it
    makes and ``out``, where an artifact would go (it must stay empty when a case fails)."""

    predictor: FusionPredictor
    bundle: Path
    files: Path
    out: Path
    capsys: pytest.CaptureFixture[str]
    #: For the audio cases: a predictor over ``clip`` (audio) and ``text``, and its bundle.
    audio: FusionPredictor | None = None
    audio_bundle: Path | None = None

    def file(self, name: str, data: bytes) -> str:
        path = self.files / name
        path.write_bytes(data)
        return str(path)

    def image(self, name: str, image: Image.Image, **save: Any) -> str:
        path = self.files / name
        image.save(path, **save)
        return str(path)

    def predict(self, images: Any = None, texts: Any = None) -> np.ndarray:
        return self.predictor.predict_proba(images=images, texts=texts)

    def cli(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        return code, self.capsys.readouterr().err

    def sound(self, name: str, samples: np.ndarray, rate: int = 16000, **save: Any) -> str:
        path = self.files / name
        sf.write(path, samples, rate, **save)
        return str(path)

    def hear(self, clips: list[Any], texts: list[Any] | None = None) -> np.ndarray:
        assert self.audio is not None
        return self.audio.predict_proba({"clip": clips, "text": texts or ["red"] * len(clips)})

    def recipe(self, **changes: Any) -> str:
        raw = yaml.safe_load(SYNTHETIC.read_text())
        raw.update(changes)
        path = self.files / "recipe.yaml"
        path.write_text(yaml.safe_dump(raw))
        return str(path)


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Env], Any]
    #: None: the case works; an exception type; or a CLI exit status.
    expect: type[EnsembleError] | int | None
    #: Text the error message (or the CLI's stderr) must contain.
    culprit: str = ""
    check: Callable[[Any, Env], None] | None = None

    @property
    def outcome(self) -> str:
        if self.expect is None:
            return "works"
        if isinstance(self.expect, int):
            return f"exit {self.expect}"
        return self.expect.__name__


# -- inputs -----------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _noise(size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3),
                                                             dtype=np.uint8))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` but holds almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _palette() -> Image.Image:
    image = Image.new("P", (8, 8))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.info["transparency"] = 0
    return image


def _huge(env: Env) -> tuple[float, int]:
    """Predict on a 10000x10000 image; return the seconds taken and the peak-memory growth."""
    path = env.file("huge.png", _png_header(10_000, 10_000))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        env.predict(images=[path], texts=["red"])
    finally:
        seconds = time.perf_counter() - started
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
        assert seconds < 5 and grown_kib < 200_000, (seconds, grown_kib)  # no 300 MB decode
    return seconds, grown_kib


def _dataset_with(labels: list[str], ids: list[str]) -> Dataset:
    rows = make_dataset(len(labels))
    return Dataset.from_dict({"id": ids, "image": rows["image"], "text": rows["text"],
                              "label": labels})


def _nan_expert(env: Env) -> FusionPredictor:
    image = copy.deepcopy(env.predictor.experts["image"])
    with torch.no_grad():
        for parameter in image.model.parameters():
            parameter.fill_(float("nan"))
    return FusionPredictor({**env.predictor.experts, "image": image}, env.predictor.combiner)


def _reversed_text_expert(env: Env) -> FusionPredictor:
    """The same text expert with its class list (and head rows) in the reverse order."""
    text = copy.deepcopy(env.predictor.experts["text"])
    text.labels = LabelSpace(text.class_names[::-1])
    head = text.classifier()
    with torch.no_grad():
        head.weight.copy_(head.weight.flip(0))
        head.bias.copy_(head.bias.flip(0))
    return FusionPredictor({**env.predictor.experts, "text": text}, env.predictor.combiner)


def _same_as_in_order(result: np.ndarray, env: Env) -> None:
    np.testing.assert_allclose(result, env.predict(images=[_noise()], texts=["red apple"]),
                               rtol=0, atol=1e-6)


def _newer_bundle(env: Env) -> str:
    bundle = Path(shutil.copytree(env.bundle, env.files / "bundle"))
    config = json.loads((bundle / "config.json").read_text())
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config))
    resign(bundle)
    return str(bundle)


def _distribution(rows: int, classes: int = 3) -> Callable[[Any, Env], None]:
    def check(result: Any, env: Env) -> None:
        proba = np.asarray(result)
        assert proba.shape == (rows, classes) and np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)

    return check


def _one_line(code: int, stderr: str) -> None:
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def _tone(seconds: float = 0.3, rate: int = 16000, frequency: float = TONES["red"]
          ) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)
            ).astype(np.float32)


def _encoded(samples: np.ndarray, format: str = "WAV", **save: Any) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format=format, **save)
    return buffer.getvalue()


def _hours_long(env: Env) -> tuple[float, int]:
    """Predict on a 3-hour WAV (sparse on disk); return seconds and peak-memory growth."""
    path = env.files / "hours.wav"
    frames = 16000 * 3600 * 3
    data = frames * 2
    with path.open("wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
                     + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
                     + b"data" + struct.pack("<I", data))
        handle.truncate(44 + data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        env.hear([str(path)])
    finally:
        seconds = time.perf_counter() - started
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
        assert seconds < 5 and grown_kib < 200_000, (seconds, grown_kib)  # no 346 MB decode
    return seconds, grown_kib


def _corrupt_rows_file(env: Env) -> tuple[int, str]:
    """``ensemble predict --data`` over rows whose second clip is corrupt."""
    env.sound("good.wav", _tone())
    (env.files / "bad.wav").write_bytes(b"RIFF$\x00\x00\x00WAVEjunk")
    rows = env.files / "rows.csv"
    rows.write_text("clip,text\ngood.wav,red\nbad.wav,blue\n")
    assert env.audio_bundle is not None
    return env.cli("predict", str(env.audio_bundle), "-q", "--data", str(rows), "--out",
                   str(env.out / "predictions.csv"))


LOGITS = {"image": np.zeros((4, 3)), "text": np.ones((4, 3))}

CASES = [
    # -- images -------------------------------------------------------------------------
    Case("image-corrupt-file", lambda e: e.predict(
        images=[e.file("corrupt.png", bytes(range(256)) * 4)], texts=["red"]),
        InvalidImageError, "corrupt.png"),
    Case("image-truncated-png", lambda e: e.predict(
        images=[e.file("truncated.png", _png(_noise())[:400])], texts=["red"]),
        InvalidImageError, "truncated.png"),
    Case("image-zero-byte-file", lambda e: e.predict(
        images=[e.file("empty.png", b"")], texts=["red"]), InvalidImageError, "empty.png"),
    Case("image-missing-file", lambda e: e.predict(
        images=[str(e.files / "missing.png")], texts=["red"]), InvalidImageError,
        "missing.png' of example '0' does not exist"),
    Case("image-1x1", lambda e: e.predict(
        images=[e.image("dot.png", Image.new("RGB", (1, 1)))], texts=["red"]), None,
        check=_distribution(1)),
    Case("image-10000x10000-refused-fast-without-decoding", _huge, InvalidImageError,
         "10000x10000, above the limit"),
    Case("image-cmyk-jpeg", lambda e: e.predict(images=[e.image(
        "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))], texts=["red"]), None,
        check=_distribution(1)),
    Case("image-16-bit-png", lambda e: e.predict(images=[e.image(
        "deep.png", Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)))],
        texts=["red"]), None, check=_distribution(1)),
    Case("image-palette-png-with-transparency", lambda e: e.predict(
        images=[e.image("palette.png", _palette())], texts=["red"]), None,
        check=_distribution(1)),
    Case("cli-predict-corrupt-image", lambda e: e.cli(
        "predict", str(e.bundle), "-q", "--image", e.file("bad.png", b"GIF89a nope")),
        4, "bad.png"),
    Case("cli-predict-10000x10000-image", lambda e: e.cli(
        "predict", str(e.bundle), "-q", "--image", e.file("big.png",
                                                         _png_header(10_000, 10_000))),
        4, "above the limit"),
    # -- texts --------------------------------------------------------------------------
    Case("text-empty", lambda e: e.predict(texts=[""]), InvalidTextError,
         "text of example '0' is empty"),
    Case("text-whitespace-only", lambda e: e.predict(texts=["red", " \n\t "]),
         InvalidTextError, "text of example '1' is empty"),
    Case("text-very-long", lambda e: e.predict(texts=["red apple " * 50_000]), None,
         check=_distribution(1)),
    Case("text-non-utf8-bytes", lambda e: e.predict(texts=[b"\xff\xfe red"]),
         InvalidTextError, "not valid UTF-8"),
    Case("cli-predict-whitespace-text", lambda e: e.cli(
        "predict", str(e.bundle), "-q", "--text", "   "), 4, "is empty"),
    # -- audio clips ----------------------------------------------------------------------
    Case("audio-corrupt-file", lambda e: e.hear([e.file("corrupt.wav", bytes(range(256)) * 4)]),
         InvalidAudioError, "corrupt.wav' of example '0' cannot be read"),
    Case("audio-truncated-wav", lambda e: e.hear([e.file("cut.wav", _encoded(_tone())[:3000])]),
         InvalidAudioError, "cut.wav' of example '0' is truncated"),
    Case("audio-truncated-flac", lambda e: e.hear([e.file(
        "cut.flac", _encoded(np.random.default_rng(0).uniform(-1, 1, 16000).astype(np.float32),
                             format="FLAC")[:5000])]),
        InvalidAudioError, "cut.flac' of example '0' cannot be read"),
    Case("audio-zero-byte-file", lambda e: e.hear([e.file("empty.wav", b"")]),
         InvalidAudioError, "empty.wav"),
    Case("audio-empty-clip", lambda e: e.hear([e.sound("none.wav", np.zeros(0, np.float32))]),
         InvalidAudioError, "none.wav' of example '0' is empty (0 samples)"),
    Case("audio-empty-array", lambda e: e.hear([None, {"array": [], "sampling_rate": 16000}]),
         InvalidAudioError, "audio of example '1' is empty"),
    Case("audio-silent-clip", lambda e: e.hear([e.sound("quiet.wav", np.zeros(4800))]), None,
         check=_distribution(1)),
    Case("audio-hours-long-cut-fast-without-decoding", _hours_long, None),
    Case("audio-stereo-mixed-down", lambda e: e.hear([e.sound(
        "stereo.flac", np.stack([_tone(), _tone()], axis=1))]), None, check=_distribution(1)),
    Case("audio-8-bit-wav", lambda e: e.hear([e.sound("u8.wav", _tone(), subtype="PCM_U8")]),
         None, check=_distribution(1)),
    Case("audio-44k-resampled", lambda e: e.hear([{"array": _tone(rate=44100),
                                                   "sampling_rate": 44100}]), None,
         check=_distribution(1)),
    Case("audio-nan-samples", lambda e: e.hear([{"array": np.array([0.1, np.nan, 0.2]),
                                                 "sampling_rate": 16000}]),
         InvalidAudioError, "audio of example '0' holds NaN or infinite samples"),
    Case("audio-inf-in-a-float-wav", lambda e: e.hear([e.sound(
        "inf.wav", np.array([0.1, np.inf] * 800, np.float32), subtype="FLOAT")]),
        InvalidAudioError, "inf.wav' of example '0' holds NaN or infinite samples"),
    Case("audio-sampling-rate-zero", lambda e: e.hear([{"array": _tone(), "sampling_rate": 0}]),
         InvalidAudioError, "has sampling rate 0"),
    Case("audio-sampling-rate-negative", lambda e: e.hear([{"array": _tone(),
                                                            "sampling_rate": -16000}]),
         InvalidAudioError, "has sampling rate -16000"),
    Case("audio-bare-array-without-a-rate", lambda e: e.hear([_tone()]), InvalidAudioError,
         "without a sampling rate"),
    Case("audio-missing-for-one-row", lambda e: e.audio.explain(
        {"clip": [None, e.sound("ok.wav", _tone())], "text": ["red", "red"]}), None,
        check=lambda rows, e: rows[0]["experts"]["clip"] == {"available": False}
        and rows[1]["experts"]["clip"]["available"]),
    Case("cli-predict-corrupt-audio", lambda e: e.cli(
        "predict", str(e.audio_bundle), "-q", "--input", f"clip={e.file('bad.wav', b'RIFF')}"),
        4, "bad.wav' of example '0' cannot be read"),
    Case("cli-predict-file-with-a-corrupt-clip", _corrupt_rows_file, 4,
         "bad.wav' of example '1' cannot be read"),
    # -- modalities -----------------------------------------------------------------------
    Case("none-for-one-modality-of-a-row", lambda e: e.predictor.explain(
        images=[None, _noise()], texts=["red", "blue"]), None,
        check=lambda rows, e: rows[0]["experts"]["image"] == {"available": False}),
    Case("none-as-an-experts-logits", lambda e: e.predictor.combiner.predict_proba(
        {"image": None, "text": np.zeros((2, 3))}), InvalidLogitsError, "'image'"),
    # -- labels and ids --------------------------------------------------------------------
    Case("label-outside-the-label-space", lambda e: e.predictor.evaluate(
        _dataset_with(["red", "purple", "blue"], ["a", "b", "c"])), LabelError,
        "label 'purple'"),
    Case("duplicate-ids", lambda e: e.predictor.predict_dataset(
        _dataset_with(["red", "green", "blue"], ["x-1", "x-2", "x-1"])), AlignmentError,
        "'x-1'"),
    Case("class-order-differs-between-experts", lambda e: _reversed_text_expert(e)
         .predict_proba(images=[_noise()], texts=["red apple"]), None,
         check=_same_as_in_order),
    Case("class-set-differs-between-experts", lambda e: FusionPredictor(
        {**e.predictor.experts, "image": ImageExpert("test_resnet", ["red", "green", "purple"],
                                                     pretrained=False)},
        e.predictor.combiner), ClassMismatchError, "'purple'"),
    # -- logits, rows, classes -------------------------------------------------------------
    Case("nan-logits-from-an-expert", lambda e: _nan_expert(e).predict(texts=["red"],
                                                                        images=[_noise()]),
         InvalidLogitsError, "logits for 'image' hold NaN/inf"),
    Case("inf-logits-at-predict-time", lambda e: e.predictor.combiner.predict_proba(
        {**LOGITS, "text": np.full((4, 3), np.inf)}), InvalidLogitsError, "'text'"),
    Case("zero-rows-dataset", lambda e: e.predictor.predict_dataset(
        make_dataset(3).select([])), DataError, "no rows"),
    Case("zero-rows-logits-at-predict-time", lambda e: e.predictor.combiner.predict_proba(
        {"image": np.zeros((0, 3)), "text": np.zeros((0, 3))}), InvalidLogitsError, "no rows"),
    Case("one-class-label-space", lambda e: ImageExpert("test_resnet", ["only"],
                                                        pretrained=False),
         ClassMismatchError, "['only']"),
    Case("one-class-in-the-labels", lambda e: create_combiner("stacking").fit(
        LOGITS, [0, 0, 0, 0], class_names=["a", "b", "c"]).predict_proba(LOGITS), None,
        check=_distribution(4)),
    # -- recipes, combiners, bundles through the CLI ----------------------------------------
    Case("recipe-unknown-key", lambda e: e.cli("run", e.recipe(experts={
        "image": {"checkpoint": "test_resnet", "trainng": {}}}), "--run-dir", str(e.out)),
        2, "unknown key 'experts.image.trainng'. Did you mean 'training'?"),
    Case("recipe-wrong-type", lambda e: e.cli("run", e.recipe(seed="zero"), "--run-dir",
                                              str(e.out)), 2, "seed must be int"),
    Case("recipe-not-a-mapping", lambda e: e.cli(
        "run", e.file("list.yaml", b"- voting\n- stacking\n"), "--run-dir", str(e.out)),
        2, "must be a mapping"),
    Case("unknown-combiner-name", lambda e: e.cli("run", e.recipe(combiners=["stackin"]),
                                                  "--run-dir", str(e.out)),
         2, "Did you mean 'stacking'"),
    Case("bundle-from-a-newer-format-version", lambda e: e.cli(
        "predict", _newer_bundle(e), "-q", "--text", "red"), 3,
        "format version 99, this library reads up to 1; upgrade"),
]


@pytest.fixture(scope="module")
def predictor(tiny_text_checkpoint: Path) -> FusionPredictor:
    return tiny_predictor(tiny_text_checkpoint)


@pytest.fixture(scope="module")
def bundle(predictor: FusionPredictor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return predictor.save(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def audio_predictor(tiny_audio_checkpoint: Path, tiny_text_checkpoint: Path
                    ) -> FusionPredictor:
    """Random tiny audio (column ``clip``) + text experts and a voting combiner."""
    from ensemble.experts import AudioExpert, TextExpert
    from ensemble.logits import LogitSet

    experts = {"clip": AudioExpert(str(tiny_audio_checkpoint), CLASSES, column="clip",
                                   pretrained=False, max_duration=1.0),
               "text": TextExpert(str(tiny_text_checkpoint), CLASSES)}
    data = make_audio_dataset(9)
    logits = LogitSet.from_experts(experts, data, split="validation")
    return FusionPredictor(experts, create_combiner("voting").fit(logits,
                                                                  np.asarray(data["label"])))


@pytest.fixture(scope="module")
def audio_bundle(audio_predictor: FusionPredictor, tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    return audio_predictor.save(tmp_path_factory.mktemp("audio-bundle") / "bundle")


def test_the_battery_has_at_least_25_cases_with_unique_ids() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}--{c.outcome}" for c in CASES])
def test_bad_input(case: Case, predictor: FusionPredictor, bundle: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    (tmp_path / "files").mkdir()
    env = Env(predictor, bundle, tmp_path / "files", tmp_path / "out", capsys)
    if "audio" in case.id or "clip" in case.id:
        env.audio = request.getfixturevalue("audio_predictor")
        env.audio_bundle = request.getfixturevalue("audio_bundle")
    if case.expect is None:
        result = case.run(env)
        if case.check is not None:
            case.check(result, env)
    elif isinstance(case.expect, int):
        code, stderr = case.run(env)
        assert code == case.expect, stderr
        assert case.culprit in stderr
        _one_line(code, stderr)
    else:
        with pytest.raises(case.expect) as info:
            case.run(env)
        assert case.culprit in str(info.value)
    assert not env.out.exists(), "a failed case left an output behind"
    assert debris(tmp_path) == [] and debris(bundle) == []
