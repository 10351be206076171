"""Atomic, pickle-free persistence helpers shared by every artifact writer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .exceptions import ArtifactError

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "atomic_directory",
    "atomic_write_text",
    "library_versions",
    "read_json",
    "read_tensors",
    "read_verified_tensors",
    "sha256_file",
    "write_json",
    "write_tensors",
]


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    The temporary directory is a sibling of ``target`` (same file system), so the final
    rename is atomic: readers see either the old complete artifact or the new one, never
    a half-written directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target} already exists; pass overwrite=True or choose another path.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default)
    atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object, raising :class:`ArtifactError` when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the artifact is incomplete or not one of ours.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); the file is corrupt.") from err
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object, found {type(data).__name__}.")
    return data


def check_format_version(config: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse artifacts written by a newer, unknown format version."""
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ArtifactError(f"{path}: 'format_version' is {version!r}; expected an integer >= 1.")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path} was written with format version {version}, this library reads up to "
            f"{FORMAT_VERSION}; upgrade `late-fusion` to load it."
        )


def write_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save numpy arrays to a safetensors file (atomically); return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        arrays = {key: np.ascontiguousarray(value) for key, value in tensors.items()}
        save_file(arrays, tmp, metadata=dict(metadata) if metadata else None)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
        return digest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a safetensors file into numpy arrays; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the artifact is incomplete.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{path} is not a valid safetensors file ({err}).") from err


def read_verified_tensors(
    path: str | os.PathLike[str], expected_sha256: Any, *, remedy: str
) -> dict[str, np.ndarray]:
    """Load a safetensors file after checking its sha256 against the one saved with it.

    ``remedy`` completes the error message (what to do when the file was modified).
    """
    path = Path(path)
    tensors = read_tensors(path)
    if sha256_file(path) != expected_sha256:
        raise ArtifactError(
            f"{path} does not match the checksum in config.json; the artifact was modified "
            f"after saving. {remedy}"
        )
    return tensors


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape an artifact, for provenance."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in ("late-fusion", "torch", "timm", "transformers", "accelerate", "datasets",
                 "scikit-learn", "safetensors", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
