"""The audio modality: raw values to mono float32 waveforms, audio columns checked at load time.

:func:`to_waveform` turns an audio file path (WAV, FLAC, OGG, MP3, ... as far as libsndfile
reads them), the encoded bytes of such a file, a ``{"bytes"|"path"}`` dict (what a
``datasets.Audio(decode=False)`` column holds) or a ``{"array", "sampling_rate"}`` mapping
(what ``datasets.Audio(decode=True)`` yields) into ``{"array": float32 [samples],
"sampling_rate": int}``: channels mixed down to mono, optionally cut to ``max_duration``
seconds (a long file is read only that far) and resampled. :func:`verify_audio` decodes a
stored clip once to prove that it is usable. :class:`AudioModality` makes a column of file
paths, bytes or arrays an ``Audio(decode=False)`` column with absolute paths, and decodes
every clip of every split when the data is loaded, so a corrupt or truncated file fails
before any training.

Files are decoded with ``soundfile`` (libsndfile), imported on first use: ``pip install
soundfile`` (or the ``audio`` extra). ``datasets``' own audio decoding needs ``torchcodec``,
which is not used here. Resampling is ``scipy.signal.resample_poly`` (a polyphase
Kaiser-windowed FIR filter; scipy comes with scikit-learn), the same on every machine.

Example:
    >>> import numpy as np
    >>> clip = to_waveform({"array": np.zeros((800, 2)), "sampling_rate": 8000}, ident="ex-1",
    ...                    sampling_rate=16000)
    >>> clip["array"].shape, clip["array"].dtype, clip["sampling_rate"]
    ((1600,), dtype('float32'), 16000)
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..exceptions import DependencyError, InvalidAudioError
from .base import (
    ColumnContext,
    Modality,
    encoded_file_digest,
    is_missing_scalar,
    register_modality,
    replace_column,
    with_resolved_paths,
)

__all__ = [
    "AUDIO_INSTALL",
    "AUDIO_SUFFIXES",
    "AudioModality",
    "to_waveform",
    "verify_audio",
]

#: How to install the decoder (named by every DependencyError about it).
AUDIO_INSTALL = "pip install soundfile (or pip install 'late-fusion[audio]')"
#: File name endings taken for audio files (libsndfile's formats).
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                            ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"})
_STRING_DTYPES = ("string", "large_string")
_BINARY_DTYPES = ("binary", "large_binary")
#: A WAV whose data chunk declares more bytes than the file holds (libsndfile's log line).
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: Declared sizes that mean "unknown length" (streamed WAVs), not a truncated file.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0xFFFFFFFE)
_BLOCK = 65_536
_BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def _soundfile() -> ModuleType:
    """``soundfile``, or a :class:`DependencyError` saying how to install it."""
    try:
        import soundfile
    except ImportError as err:  # also OSError-free: soundfile wheels bundle libsndfile
        raise DependencyError(
            f"reading audio files needs the soundfile package (libsndfile), which is not "
            f"installed: {AUDIO_INSTALL}."
        ) from err
    return soundfile


def to_waveform(value: Any, ident: str, *, sampling_rate: int | None = None,
                max_duration: float | None = None) -> dict[str, Any]:
    """``value`` as ``{"array": float32 [samples], "sampling_rate": int}``, mono.

    ``value`` is a file path, encoded file bytes, a ``{"bytes"|"path"}`` dict, an
    ``{"array", "sampling_rate"}`` mapping (1-D, or 2-D with channels on the shorter axis;
    integer samples are scaled to [-1, 1]) or a decoded ``datasets`` audio object. Channels
    are averaged; ``max_duration`` (seconds) cuts the clip, reading a file only that far;
    ``sampling_rate`` resamples to that rate. Anything unusable (corrupt or truncated file,
    no samples, NaN or infinite samples, a sampling rate that is not a positive integer)
    raises :class:`InvalidAudioError` naming ``ident`` and the file. A silent clip is fine.

    Example:
        >>> to_waveform({"array": [0.0, 0.5, -0.5], "sampling_rate": 16000}, ident="x")
        {'array': array([ 0. ,  0.5, -0.5], dtype=float32), 'sampling_rate': 16000}
    """
    target = _target_rate(sampling_rate)
    if max_duration is not None and not (isinstance(max_duration, (int, float))
                                         and not isinstance(max_duration, bool)
                                         and max_duration > 0 and math.isfinite(max_duration)):
        raise InvalidAudioError(f"max_duration must be a positive number of seconds, got "
                                f"{max_duration!r}.")
    return _waveform(value, f"of example {ident!r}", target, max_duration)


def _waveform(value: Any, owner: str, target: int | None, max_duration: float | None
              ) -> dict[str, Any]:
    """:func:`to_waveform` with ``owner`` naming the example (``"of example 'x'"``)."""
    what = _describe(value, owner)
    samples, rate = _samples(value, what, max_duration)
    if samples.shape[0] == 0:
        raise InvalidAudioError(
            f"{what} is empty (0 samples); give a clip with sound, or None to mark the audio "
            "as missing."
        )
    if not np.isfinite(samples).all():
        bad = int(np.flatnonzero(~np.isfinite(samples).all(axis=1))[0])
        raise InvalidAudioError(
            f"{what} holds NaN or infinite samples (the first at sample {bad}, "
            f"{bad / rate:.3f} s); fix the recording or give None to mark it as missing."
        )
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if max_duration is not None:
        mono = mono[: _frames(max_duration, rate)]
    if target is not None and target != rate:
        mono = _resample(mono, rate, target)
        rate = target
        if max_duration is not None:
            mono = mono[: _frames(max_duration, rate)]
    return {"array": np.ascontiguousarray(mono, dtype=np.float32), "sampling_rate": int(rate)}


def _target_rate(rate: Any) -> int | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InvalidAudioError(f"the target sampling_rate must be a positive integer, got "
                                f"{rate!r}.")
    return int(rate)


def _frames(seconds: float, rate: int) -> int:
    return max(1, math.ceil(seconds * rate - 1e-9))


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    divisor = math.gcd(rate, target)
    return resample_poly(samples, target // divisor, rate // divisor).astype(np.float32)


def _describe(value: Any, owner: str) -> str:
    """``audio of example 'x'``, naming the file too when the clip comes from one."""
    if isinstance(value, Mapping) and value.get("path") and "array" not in value:
        value = value["path"]  # named even when the clip comes as its bytes
    if isinstance(value, (str, os.PathLike)):
        return f"audio file {os.fspath(value)!r} {owner}"
    return f"audio {owner}"


def _samples(value: Any, what: str, max_duration: float | None) -> tuple[np.ndarray, int]:
    """float32 ``[frames, channels]`` and the sampling rate of any accepted value."""
    if isinstance(value, Mapping):
        if "array" in value:
            if "sampling_rate" not in value:
                raise InvalidAudioError(f"{what} has an 'array' but no 'sampling_rate'; give "
                                        "{'array': ..., 'sampling_rate': 16000}.")
            return _from_array(value["array"], value["sampling_rate"], what)
        if value.get("bytes"):
            return _decode(io.BytesIO(bytes(value["bytes"])), what, max_duration)
        if value.get("path"):
            return _samples(value["path"], what, max_duration)
        raise InvalidAudioError(f"{what} is a mapping without 'array', 'bytes' or 'path'; give "
                                "a file, or {'array': ..., 'sampling_rate': ...}.")
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if "://" in path:
            raise InvalidAudioError(f"{what} is a URL; download it first (audio is read from "
                                    "local files or bytes only).")
        if not os.path.isfile(path):
            raise InvalidAudioError(f"{what} does not exist; check the path.")
        return _decode(path, what, max_duration)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(value)), what, max_duration)
    if callable(getattr(value, "get_all_samples", None)):  # datasets' decoded AudioDecoder
        decoded = value.get_all_samples()
        data = np.asarray(getattr(decoded.data, "numpy", lambda: decoded.data)())
        return _from_array(data, decoded.sample_rate, what)
    if isinstance(value, (np.ndarray, list, tuple)):
        raise InvalidAudioError(
            f"{what} is a bare array without a sampling rate; give {{'array': samples, "
            "'sampling_rate': 16000}, a file path or the file's bytes."
        )
    raise InvalidAudioError(
        f"{what} is a {type(value).__name__}; give a file path, the file's bytes, or "
        "{'array': samples, 'sampling_rate': rate}, or None for a missing clip."
    )


def _from_array(array: Any, rate: Any, what: str) -> tuple[np.ndarray, int]:
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InvalidAudioError(f"{what} has sampling rate {rate!r}; it must be a positive "
                                "integer number of samples per second (e.g. 16000).")
    try:
        data = np.asarray(array)
    except (TypeError, ValueError) as err:
        raise InvalidAudioError(f"{what} is not an array of numbers ({err}).") from err
    if data.dtype.kind not in "iuf" or data.ndim not in (1, 2):
        raise InvalidAudioError(
            f"{what} is an array of shape {data.shape} and dtype {data.dtype}; give 1-D samples "
            "(mono) or 2-D [samples, channels] numbers."
        )
    if data.ndim == 1:
        data = data[:, None]
    elif data.shape[0] < data.shape[1]:  # [channels, samples]: channels are the shorter axis
        data = data.T
    return _scaled(data), int(rate)


def _scaled(data: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1] (unsigned 8-bit is centred on 128); floats as they are."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    info = np.iinfo(data.dtype)
    if data.dtype.kind == "u":
        middle = (int(info.max) + 1) // 2
        return ((data.astype(np.float64) - middle) / middle).astype(np.float32)
    return (data.astype(np.float64) / (int(info.max) + 1)).astype(np.float32)


def _reason(err: BaseException) -> str:
    """An error's message, without the repr of an in-memory buffer."""
    return _BUFFER_REPR.sub("the bytes", str(err)) or type(err).__name__


def _decode(source: Any, what: str, max_duration: float | None) -> tuple[np.ndarray, int]:
    soundfile = _soundfile()
    advice = ("the file is corrupt, truncated or not an audio format libsndfile reads (WAV, "
              "FLAC, OGG, MP3, ...).")
    with _read_errors(what, advice), soundfile.SoundFile(source) as handle:
        rate, frames = _checked_header(handle, what)
        wanted = frames if max_duration is None else min(frames, _frames(max_duration, rate))
        data = handle.read(frames=wanted, dtype="float32", always_2d=True)
    _require_decoded(what, frames, data.shape[0], wanted,
                     "replace the file, or give None to mark the audio as missing.")
    return data, rate


@contextlib.contextmanager
def _read_errors(what: str, advice: str) -> Iterator[None]:
    """Turn what soundfile raises on a bad file into :class:`InvalidAudioError` naming
    ``what`` and ending with ``advice`` (our own typed errors pass through)."""
    try:
        yield
    except InvalidAudioError:
        raise
    except (RuntimeError, OSError, ValueError, EOFError, TypeError, MemoryError) as err:
        raise InvalidAudioError(f"{what} cannot be read ({_reason(err)}); {advice}") from err


def _require_decoded(what: str, frames: int, decoded: int, wanted: int, advice: str) -> None:
    """Raise :class:`InvalidAudioError` when fewer than ``wanted`` of the ``frames`` samples
    the header promises could be decoded."""
    if decoded < wanted:
        raise InvalidAudioError(
            f"{what} is truncated: its header promises {frames} samples but only {decoded} "
            f"could be decoded; {advice}"
        )


def _checked_header(handle: Any, what: str) -> tuple[int, int]:
    """The sampling rate and frame count of an open file, checked (truncated WAV data too)."""
    rate, frames = int(handle.samplerate), int(handle.frames)
    if rate <= 0:
        raise InvalidAudioError(f"{what} declares sampling rate {rate}; the file is corrupt.")
    if frames <= 0:
        raise InvalidAudioError(
            f"{what} is empty (0 samples); give a clip with sound, or None to mark the audio "
            "as missing."
        )
    match = _SHORT_DATA.search(str(getattr(handle, "extra_info", "") or ""))
    if match is not None:
        declared, present = int(match.group(1)), int(match.group(2))
        if declared not in _UNKNOWN_SIZES and declared > present:
            raise InvalidAudioError(
                f"{what} is truncated: its data chunk declares {declared} bytes but the file "
                f"holds {present}; replace the file, or give None to mark the audio as "
                "missing."
            )
    return rate, frames


def verify_audio(stored: Any, where: str) -> None:
    """Decode a stored clip (``{"bytes", "path"}``, bytes or a path) once, or raise.

    The whole clip is read in blocks (memory stays bounded for long recordings) and checked
    like :func:`to_waveform` checks it: readable, not truncated, not empty, a positive
    sampling rate, finite samples. ``where`` names the example; the
    :class:`InvalidAudioError` names it, the file and the fix. Remote URLs are not fetched.

    Example:
        >>> verify_audio(b"not audio", where="row 0 of split 'train'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ensemble.exceptions.InvalidAudioError: row 0 of split 'train': the stored audio clip ...
    """
    data = stored.get("bytes") if isinstance(stored, Mapping) else None
    path = stored.get("path") if isinstance(stored, Mapping) else None
    if isinstance(stored, (bytes, bytearray)):
        data = bytes(stored)
    elif isinstance(stored, (str, os.PathLike)):
        path = os.fspath(stored)
    if data is None and (path is None or "://" in path):
        return
    what = f"{where}: " + ("the stored audio clip" if data is not None
                           else f"audio file {path!r}")
    soundfile = _soundfile()
    advice = ("it is corrupt, truncated or not audio: replace or remove it, or set the value "
              "to None to mark the audio as missing.")
    source = io.BytesIO(data) if data is not None else path
    with _read_errors(what, advice), soundfile.SoundFile(source) as handle:
        rate, frames = _checked_header(handle, what)
        seen = 0
        while True:
            block = handle.read(frames=_BLOCK, dtype="float32", always_2d=True)
            if not block.shape[0]:
                break
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                bad = seen + int(np.flatnonzero(~finite)[0])
                raise InvalidAudioError(
                    f"{what} holds NaN or infinite samples (the first at sample {bad}, "
                    f"{bad / rate:.3f} s); fix the recording, or set the value to None to "
                    "mark it as missing.")
            seen += block.shape[0]
    _require_decoded(what, frames, seen, frames,
                     "replace it, or set the value to None to mark the audio as missing.")


def _wav_bytes(clip: Mapping[str, Any]) -> bytes:
    """A checked ``{"array", "sampling_rate"}`` clip as 32-bit float WAV bytes (lossless)."""
    buffer = io.BytesIO()
    _soundfile().write(buffer, clip["array"], clip["sampling_rate"], format="WAV",
                       subtype="FLOAT")
    return buffer.getvalue()


@register_modality("audio")
class AudioModality(Modality):
    """Audio clips: a ``datasets.Audio`` column; values coerce to mono float32 waveforms.

    At load time a column of file paths, file bytes, ``{"bytes", "path"}`` dicts or
    ``{"array", "sampling_rate"}`` mappings becomes an ``Audio(decode=False)`` column (arrays
    are stored as float WAV bytes; relative paths are resolved against
    ``ColumnContext.base_dir``), and every clip of the column is decoded once
    (:func:`verify_audio`).

    Example:
        >>> from datasets import Audio, Value
        >>> AudioModality().matches(Audio()), AudioModality().matches(Value("string"))
        (True, False)
    """

    file_paths = True
    blank_is_missing = True

    def matches(self, feature: Any) -> bool:
        from datasets import Audio

        return isinstance(feature, Audio)

    def accepts(self, feature: Any) -> bool:
        # paths, file bytes, {"bytes", "path"} and {"array", "sampling_rate"} are read too
        if self.matches(feature) or getattr(feature, "dtype", None) in (
                *_STRING_DTYPES, *_BINARY_DTYPES):
            return True
        return isinstance(feature, dict) and (set(feature) <= {"bytes", "path"} or
                                              {"array", "sampling_rate"} <= set(feature))

    def coerce(self, value: Any, ident: str) -> dict[str, Any]:
        return to_waveform(value, ident)

    def digest(self, value: Any) -> bytes:
        """The encoded clip: its bytes, else the file's bytes, else the path; an array
        mapping hashes its rate and float32 samples."""
        if isinstance(value, Mapping) and "array" in value:
            samples = np.ascontiguousarray(np.asarray(value["array"], dtype=np.float32))
            return str(value.get("sampling_rate")).encode() + b"\x1f" + samples.tobytes()
        return encoded_file_digest(value)

    def prepare_column(self, dataset: Any, column: str, split: str,
                       context: ColumnContext | None = None) -> Any:
        """Make ``column`` an ``Audio(decode=False)`` column with absolute, existing paths."""
        from datasets import Audio

        context = context or ColumnContext(source=column)
        base_dir = context.base_dir or Path.cwd()
        feature = dataset.features[column]
        values = dataset.with_format("arrow")[column]
        stored = Audio(decode=False)
        if getattr(feature, "dtype", None) in _STRING_DTYPES:
            paths = values.to_pylist()
            storage = [None if is_missing_scalar(p) else
                       {"bytes": None, "path": _checked_path(p, base_dir, split, row, context)}
                       for row, p in enumerate(paths)]
            return replace_column(dataset, column, storage, stored)
        if isinstance(feature, dict) and {"array", "sampling_rate"} <= set(feature):
            storage = [None if clip is None else
                       {"bytes": _wav_bytes(_waveform(clip, f"of {context.row(split, row)}",
                                                      None, None)),
                        "path": None}
                       for row, clip in enumerate(values.to_pylist())]
            return replace_column(dataset, column, storage, stored)
        if self.matches(feature) or getattr(feature, "dtype", None) in _BINARY_DTYPES or (
                isinstance(feature, dict) and set(feature) <= {"bytes", "path"}):
            if not self.matches(feature):
                dataset = dataset.cast_column(column, stored)
            return self._resolve_stored_paths(dataset, column, split, base_dir, context)
        if values.null_count == len(values):  # e.g. an empty csv column read as float64
            return replace_column(dataset, column, [None] * len(values), stored)
        raise InvalidAudioError(
            f"{context.describe(split)} holds {feature} values, which are not audio (file "
            f"paths, file bytes, {{'array', 'sampling_rate'}} mappings or a datasets.Audio "
            f"feature). Declare that column with its own modality{context.or_fix()}."
        )

    def _resolve_stored_paths(self, dataset: Any, column: str, split: str, base_dir: Path,
                              context: ColumnContext) -> Any:
        from datasets import Audio

        stored = Audio(decode=False)
        resolved = with_resolved_paths(
            dataset, column, stored,
            lambda path, row, _: _checked_path(path, base_dir, split, row, context))
        return resolved if resolved is not None else dataset.cast_column(column, stored)

    def check_column(self, dataset: Any, column: str, split: str,
                     context: ColumnContext | None = None) -> None:
        """The column is an ``Audio`` feature and every clip in it decodes."""
        context = context or ColumnContext(source=column)
        feature = dataset.features.get(column)
        if not self.matches(feature):
            raise InvalidAudioError(
                f"{context.describe(split)} holds {feature}, not audio{context.or_fix()}."
            )
        context.verify_values(dataset, column, split, verify_audio, batch_size=64)


def _checked_path(path: str, base_dir: Path, split: str, row: int,
                  context: ColumnContext) -> str:
    where = context.row(split, row)
    if not path.strip():
        raise InvalidAudioError(
            f"{where} has an empty audio path in {context.describe(split)}; give a file path, "
            "or None to mark the audio as missing."
        )
    if "://" in path:
        return path
    candidate = Path(path).expanduser()
    resolved = str(candidate if candidate.is_absolute() else base_dir / candidate)
    if os.path.isfile(resolved):
        return resolved
    if " " in path.strip() and Path(path.strip()).suffix.lower() not in AUDIO_SUFFIXES:
        raise InvalidAudioError(
            f"{context.describe(split)} is declared as an audio input but holds text such as "
            f"{path!r} ({where}), not audio file paths. Declare it as a text input (e.g. "
            f"inputs={{{context.source!r}: 'text'}}){context.or_fix()}."
        )
    raise InvalidAudioError(
        f"{where}: audio file {path!r} not found (looked at {resolved}); fix the path, point "
        "relative paths elsewhere (image_root=, CLI: --image-root, resolves every input's "
        "relative paths), or use None for a missing clip."
    )
