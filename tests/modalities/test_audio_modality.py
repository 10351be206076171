"""The audio modality: files, bytes and arrays to mono waveforms (cut, resampled), bad clips
refused with the file or row named, and audio columns prepared and checked at load time."""

from __future__ import annotations

import io
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import Audio, Dataset, DatasetDict, Value

from ensemble.data import load_multimodal
from ensemble.exceptions import DependencyError, InvalidAudioError
from ensemble.modalities import ColumnContext, get_modality, to_waveform, verify_audio
from ensemble.testing import tone_clip

AUDIO = get_modality("audio")
RATE = 16000


def _tone(seconds: float = 0.25, frequency: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _write(path: Path, samples: np.ndarray, rate: int = RATE, **options: object) -> Path:
    sf.write(path, samples, rate, **options)
    return path


def _encoded(samples: np.ndarray, rate: int = RATE, **options: object) -> bytes:
    options.setdefault("format", "WAV")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, **options)
    return buffer.getvalue()


def _wav_header(rate: int, frames: int, bits: int = 16) -> tuple[bytes, int]:
    """A PCM WAV header for ``frames`` mono samples, and the size the whole file must have."""
    data = frames * bits // 8
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * bits // 8, bits // 8, bits)
              + b"data" + struct.pack("<I", data))
    return header, len(header) + data


def _peak_hz(clip: dict) -> float:
    spectrum = np.abs(np.fft.rfft(clip["array"]))
    return float(np.fft.rfftfreq(clip["array"].size, 1 / clip["sampling_rate"])[
        spectrum.argmax()])


# -- reading clips ------------------------------------------------------------------------


def test_every_form_of_a_clip_reads_the_same_samples(tmp_path: Path) -> None:
    tone = _tone()
    wav = _write(tmp_path / "a.wav", tone, subtype="FLOAT")
    flac = _write(tmp_path / "a.flac", tone)
    forms = [str(wav), wav, wav.read_bytes(), {"bytes": wav.read_bytes(), "path": "a.wav"},
             {"bytes": None, "path": str(wav)}, {"array": tone, "sampling_rate": RATE},
             {"array": tone.tolist(), "sampling_rate": float(RATE)}, str(flac),
             flac.read_bytes()]
    for form in forms:
        clip = to_waveform(form, ident="x")
        assert clip["sampling_rate"] == RATE and clip["array"].dtype == np.float32
        np.testing.assert_allclose(clip["array"], tone, atol=1e-4)  # FLAC is 16-bit
    assert AUDIO.coerce(str(wav), ident="x")["array"].shape == tone.shape


def test_eight_bit_and_integer_samples_are_scaled(tmp_path: Path) -> None:
    tone = _tone()
    eight = to_waveform(_write(tmp_path / "u8.wav", tone, subtype="PCM_U8"), ident="x")
    np.testing.assert_allclose(eight["array"], tone, atol=1 / 64)
    pcm = to_waveform({"array": (tone * 32767).astype(np.int16), "sampling_rate": RATE}, "x")
    np.testing.assert_allclose(pcm["array"], tone, atol=1e-4)
    unsigned = to_waveform({"array": np.array([0, 128, 255], np.uint8), "sampling_rate": 8}, "x")
    np.testing.assert_allclose(unsigned["array"], [-1.0, 0.0, 127 / 128])


def test_stereo_is_mixed_down_whichever_axis_holds_the_channels(tmp_path: Path) -> None:
    tone = _tone()
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    from_file = to_waveform(_write(tmp_path / "st.wav", stereo, subtype="FLOAT"), ident="x")
    np.testing.assert_allclose(from_file["array"], tone / 2, atol=1e-6)
    for array in (stereo, stereo.T):  # [samples, channels] and [channels, samples]
        clip = to_waveform({"array": array, "sampling_rate": RATE}, ident="x")
        np.testing.assert_allclose(clip["array"], tone / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_the_pitch_and_the_duration(rate: int) -> None:
    clip = to_waveform({"array": _tone(0.5, 1000.0, rate), "sampling_rate": rate}, ident="x",
                       sampling_rate=RATE)
    assert clip["sampling_rate"] == RATE and clip["array"].shape == (RATE // 2,)
    assert abs(_peak_hz(clip) - 1000.0) <= 2.0


def test_max_duration_cuts_long_clips_and_keeps_short_ones() -> None:
    long = {"array": _tone(1.0, rate=8000), "sampling_rate": 8000}
    assert to_waveform(long, "x", max_duration=0.25)["array"].shape == (2000,)
    assert to_waveform(long, "x", max_duration=0.25, sampling_rate=RATE)["array"].shape == (
        4000,)
    assert to_waveform(long, "x", max_duration=5.0)["array"].shape == (8000,)
    with pytest.raises(InvalidAudioError, match="max_duration must be a positive number"):
        to_waveform(long, "x", max_duration=0)


def test_an_hours_long_file_is_read_only_as_far_as_max_duration(tmp_path: Path) -> None:
    header, size = _wav_header(RATE, RATE * 3600 * 3)  # 3 hours: 346 MB, sparse on disk
    path = tmp_path / "long.wav"
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(size)
    started = time.perf_counter()
    clip = to_waveform(path, ident="x", max_duration=10.0, sampling_rate=RATE)
    assert clip["array"].shape == (10 * RATE,) and time.perf_counter() - started < 1.0


def test_a_silent_clip_is_a_clip() -> None:
    clip = to_waveform({"array": np.zeros(800), "sampling_rate": 8000}, "x", sampling_rate=RATE)
    assert clip["array"].shape == (1600,) and not clip["array"].any()


def test_a_decoded_datasets_audio_object_is_read() -> None:
    class Samples:  # the shape of torchcodec's AudioSamples: data [channels, samples]
        data = np.stack([_tone(), _tone()])
        sample_rate = RATE

    class Decoder:
        def get_all_samples(self) -> Samples:
            return Samples()

    np.testing.assert_allclose(to_waveform(Decoder(), "x")["array"], _tone(), atol=1e-6)


# -- bad clips ------------------------------------------------------------------------------


def _truncated_flac() -> bytes:
    data = _encoded(np.random.default_rng(0).uniform(-1, 1, RATE), format="FLAC")
    return data[: len(data) // 2]


BAD_FILES = {
    "corrupt.wav": (bytes(range(256)) * 8, "cannot be read"),
    "zero-bytes.wav": (b"", "cannot be read"),
    "truncated.wav": (_encoded(_tone(), subtype="PCM_16", format="WAV")[:4000],
                      "truncated: its data chunk declares 8000 bytes but the file holds"),
    "truncated.flac": (_truncated_flac(), "cannot be read"),
    "no-samples.wav": (_encoded(np.zeros(0, np.float32), format="WAV"), "is empty (0 samples)"),
    "rate-zero.wav": (_wav_header(0, 100)[0] + bytes(200), "cannot be read"),
    "nan.wav": (_encoded(np.array([0.1, np.nan, 0.2], np.float32), subtype="FLOAT",
                         format="WAV"), "NaN or infinite samples (the first at sample 1"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_names_the_file_and_the_example(tmp_path: Path, name: str) -> None:
    payload, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(InvalidAudioError) as info:
        to_waveform(str(path), ident="ex-7")
    message = str(info.value)
    assert f"audio file '{path}' of example 'ex-7'" in message and reason in message
    assert "<_io.BytesIO" not in message
    with pytest.raises(InvalidAudioError, match=r"row 2 of split 'test'") as info:
        verify_audio(payload, where="row 2 of split 'test'")
    assert "<_io.BytesIO" not in str(info.value)


@pytest.mark.parametrize(("value", "reason"), [
    ({"array": [0.1, float("nan")], "sampling_rate": RATE}, "NaN or infinite samples"),
    ({"array": [0.1, float("inf")], "sampling_rate": RATE}, "NaN or infinite samples"),
    ({"array": [], "sampling_rate": RATE}, "is empty (0 samples)"),
    ({"array": [0.1], "sampling_rate": 0}, "sampling rate 0; it must be a positive integer"),
    ({"array": [0.1], "sampling_rate": -16000}, "sampling rate -16000"),
    ({"array": [0.1], "sampling_rate": 16000.5}, "sampling rate 16000.5"),
    ({"array": [0.1], "sampling_rate": True}, "sampling rate True"),
    ({"array": [0.1]}, "no 'sampling_rate'"),
    ({"array": np.zeros((2, 2, 2)), "sampling_rate": RATE}, "shape (2, 2, 2)"),
    ({"array": ["a", "b"], "sampling_rate": RATE}, "dtype <U1"),
    ({"path": None, "bytes": None}, "without 'array', 'bytes' or 'path'"),
    (np.zeros(100), "bare array without a sampling rate"),
    ("missing.wav", "audio file 'missing.wav' of example 'ex-7' does not exist"),
    ("https://example.com/a.wav", "is a URL; download it first"),
    (7, "is a int"),
])
def test_a_bad_value_names_the_example(value: object, reason: str) -> None:
    with pytest.raises(InvalidAudioError, match=r"of example 'ex-7'") as info:
        to_waveform(value, ident="ex-7")
    assert reason in str(info.value)


def test_a_bad_target_rate_is_refused() -> None:
    with pytest.raises(InvalidAudioError, match="target sampling_rate must be a positive"):
        to_waveform({"array": [0.1], "sampling_rate": RATE}, "x", sampling_rate=0)


def test_verify_audio_reads_everything_and_skips_urls(tmp_path: Path) -> None:
    tone = np.concatenate([_tone(5.0), [np.inf], _tone(0.1)]).astype(np.float32)
    late = _write(tmp_path / "late.wav", tone, subtype="FLOAT")
    with pytest.raises(InvalidAudioError, match=r"row 0 of split 'train': audio file .*late\.wav"
                                                r"' holds NaN or infinite samples \(the first "
                                                r"at sample 80000, 5\.000 s\)"):
        verify_audio({"bytes": None, "path": str(late)}, where="row 0 of split 'train'")
    good = _write(tmp_path / "good.flac", _tone())
    for stored in (str(good), good.read_bytes(), {"bytes": None, "path": str(good)},
                   {"bytes": None, "path": "hf://datasets/x/y.wav"}):
        verify_audio(stored, where="row 0 of split 'train'")


def test_without_soundfile_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(DependencyError, match=r"pip install soundfile \(or pip install "
                                              r"'late-fusion\[audio\]'\)"):
        to_waveform(b"RIFF", ident="x")
    assert to_waveform({"array": [0.5], "sampling_rate": RATE}, "x")["array"].size == 1


# -- columns at load time ---------------------------------------------------------------------


def test_digest_is_the_encoded_clip(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.wav", _tone())
    assert AUDIO.digest({"bytes": None, "path": str(path)}) == path.read_bytes()
    assert AUDIO.digest(path.read_bytes()) == AUDIO.digest(str(path))
    clip = {"array": _tone(), "sampling_rate": RATE}
    assert AUDIO.digest(clip) == AUDIO.digest({"array": _tone().tolist(), "sampling_rate": RATE})


def test_matches_and_accepts() -> None:
    assert AUDIO.matches(Audio()) and AUDIO.matches(Audio(decode=False))
    assert not AUDIO.matches(Value("string"))
    for feature in (Value("string"), Value("binary"), {"bytes": Value("binary")},
                    {"array": [Value("float32")], "sampling_rate": Value("int64")}):
        assert AUDIO.accepts(feature)
    assert not AUDIO.accepts(Value("int64"))


def test_every_stored_form_becomes_an_undecoded_audio_column(tmp_path: Path) -> None:
    wav = _write(tmp_path / "a.wav", _tone())
    context = ColumnContext(source="clip", base_dir=tmp_path)
    columns = {
        "paths": Dataset.from_dict({"clip": ["a.wav", None]}),
        "bytes": Dataset.from_dict({"clip": [wav.read_bytes(), None]}),
        "arrays": Dataset.from_dict({"clip": [{"array": _tone(), "sampling_rate": RATE}, None]}),
        "audio": Dataset.from_dict({"clip": [str(wav), None]}).cast_column("clip", Audio()),
        "empty": Dataset.from_dict({"clip": [None, None]}, features=None),
    }
    for name, dataset in columns.items():
        prepared = AUDIO.prepare_column(dataset, "clip", "train", context)
        assert prepared.features["clip"] == Audio(decode=False), name
        AUDIO.check_column(prepared, "clip", "train", context)
        stored = prepared["clip"][:]
        assert stored[1] is None
        if name != "empty":
            np.testing.assert_allclose(to_waveform(stored[0], "x")["array"], _tone(), atol=1e-4)
    paths = AUDIO.prepare_column(columns["paths"], "clip", "train", context)["clip"][0]
    assert paths == {"bytes": None, "path": str(wav)}  # made absolute


def test_bad_columns_name_the_row_and_the_fix(tmp_path: Path) -> None:
    context = ColumnContext(source="clip", base_dir=tmp_path)
    with pytest.raises(InvalidAudioError, match=r"row 1 of split 'train': audio file 'gone\.wav'"
                                                r" not found"):
        AUDIO.prepare_column(Dataset.from_dict({"clip": [None, "gone.wav"]}), "clip", "train",
                             context)
    with pytest.raises(InvalidAudioError, match=r"holds text such as 'a dog barking'.*text "
                                                r"input"):
        AUDIO.prepare_column(Dataset.from_dict({"clip": ["a dog barking"]}), "clip", "train",
                             context)
    with pytest.raises(InvalidAudioError, match=r"audio of row 0 of split 'train' holds NaN"):
        AUDIO.prepare_column(Dataset.from_dict({"clip": [{"array": [np.nan],
                                                          "sampling_rate": RATE}]}),
                             "clip", "train", context)
    with pytest.raises(InvalidAudioError, match=r"holds Value\('int64'\) values, which are not "
                                                r"audio"):
        AUDIO.prepare_column(Dataset.from_dict({"clip": [1, 2]}), "clip", "train", context)
    corrupt = Dataset.from_dict({"clip": [_encoded(_tone()), b"junk"]}).cast_column(
        "clip", Audio(decode=False))
    with pytest.raises(InvalidAudioError, match=r"row 1 of split 'val': the stored audio clip "
                                                r"cannot be read"):
        AUDIO.check_column(corrupt, "clip", "val", context)
    AUDIO.check_column(corrupt, "clip", "val", ColumnContext(decode=False))  # not decoded


def test_load_multimodal_reads_audio_files_next_to_a_csv(tmp_path: Path) -> None:
    root = tmp_path / "calls"
    (root / "clips").mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        lines = ["clip,transcript,intent"]
        for i in range(n):
            name = f"clips/{split}-{i}.flac"
            _write(root / name, tone_clip(300.0 * (1 + i), seed=i)["array"])
            lines.append(f"{'' if (split, i) == ('train', 1) else name},call {split} {i},"
                         f"{'ab'[i % 2]}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    files = {"train": "train.csv", "test": "test.csv"}
    ds = load_multimodal(str(root), data_files=files, inputs={"clip": "audio",
                         "transcript": "text"}, label_column="intent")
    train = ds["train"]
    assert train.column_names == ["id", "label", "clip", "transcript"]
    assert train.features["clip"] == Audio(decode=False)
    assert train["clip"][1] is None and train["clip"][0]["path"] == str(root / "clips" /
                                                                        "train-0.flac")
    again = load_multimodal(str(root), data_files=files, inputs={"clip": "audio",
                            "transcript": "text"}, label_column="intent")
    assert again["test"]["id"] == ds["test"]["id"]  # content ids: stable
    (root / "clips" / "test-1.flac").write_bytes(b"fLaC broken")
    with pytest.raises(InvalidAudioError,
                       match=r"row 1 of split 'test': audio file .*test-1\.flac"):
        load_multimodal(str(root), data_files=files, inputs={"clip": "audio",
                        "transcript": "text"}, label_column="intent")


def test_an_in_memory_dataset_of_arrays_loads_as_wav_bytes() -> None:
    rows = DatasetDict(train=Dataset.from_dict({
        "clip": [tone_clip(300.0, sampling_rate=8000), None, tone_clip(900.0)],
        "label": ["low", "low", "high"]}))
    ds = load_multimodal(rows, inputs={"clip": "audio"})
    stored = ds["train"]["clip"][:]
    assert stored[1] is None and stored[0]["bytes"][:4] == b"RIFF"
    clip = to_waveform(stored[0], "x")
    assert clip["sampling_rate"] == 8000
    np.testing.assert_array_equal(clip["array"], tone_clip(300.0, sampling_rate=8000)["array"])
