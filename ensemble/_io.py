"""Atomic, pickle-free persistence helpers shared by every artifact writer."""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .exceptions import ArtifactError, EnsembleError, OutputError

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "ensure_writable",
    "library_versions",
    "output_errors",
    "read_json",
    "read_tensors",
    "read_verified_tensors",
    "sha256_file",
    "write_json",
    "write_tensors",
]


#: Suffix of every temporary file or directory a writer leaves while it works.
_TMP = ".tmp"
_HOST = socket.gethostname()
_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")
_FREE = "free some space there or write somewhere else, then run again (finished work is kept)"
_ELSEWHERE = "make it writable or choose another output directory (e.g. --run-dir)"
#: errno of a write the location refuses -> (what happened, how to fix it).
_WRITE_FAILURES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space is left on the device", _FREE),
    errno.EFBIG: ("a file is larger than the file system or the file-size limit (ulimit -f) "
                  "allows", _FREE),
    errno.EROFS: ("the file system is read-only", _ELSEWHERE),
    errno.EACCES: ("permission denied", _ELSEWHERE),
    errno.EPERM: ("operation not permitted", _ELSEWHERE),
    errno.ENOTDIR: ("a file stands where a folder is needed",
                    "remove that file or choose another output directory"),
    errno.EEXIST: ("a file stands where a folder is needed",
                   "remove that file or choose another output directory"),
}
if hasattr(errno, "EDQUOT"):
    _WRITE_FAILURES[errno.EDQUOT] = ("the disk quota is exceeded", _FREE)
_OUTPUT_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("output_depth", default=0)


def _owner() -> str:
    """``host-pid`` of this writer, embedded in temporary names so leftovers can be traced."""
    return f"{_HOST}-{os.getpid()}"


def _write_errno(error: BaseException) -> int | None:
    """The errno behind a refused write: an ``OSError`` in ``error``'s chain, or one quoted by
    a Rust writer (safetensors says ``... (os error 28)``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = current.errno if isinstance(current, OSError) else None
        if code is None:
            match = _OS_ERROR_CODE.search(str(current))
            code = int(match.group(1)) if match else None
        if code in _WRITE_FAILURES:
            return code
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def output_errors(target: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise a write the file system refuses (full disk, read-only, no permission) as an
    :class:`OutputError` naming ``target`` and the fix; other errors pass unchanged.

    Nested uses (a bundle saving its experts) convert once, at the outermost ``target``:
    the path the caller asked for, not a temporary one inside it.
    """
    token = _OUTPUT_DEPTH.set(_OUTPUT_DEPTH.get() + 1)
    try:
        yield
    except EnsembleError:
        raise
    except Exception as err:
        code = _write_errno(err) if _OUTPUT_DEPTH.get() == 1 else None
        if code is None:
            raise
        reason, fix = _WRITE_FAILURES[code]
        raise OutputError(f"cannot write {target}: {reason} ({err}); {fix}.") from err
    finally:
        _OUTPUT_DEPTH.reset(token)


def ensure_writable(directory: str | os.PathLike[str], probe_bytes: int = 1 << 16) -> Path:
    """Create ``directory`` if needed and prove a file can be written and synced there.

    Called before long work (fine-tuning) so an unwritable or full output location fails at
    once with an :class:`OutputError` instead of at the first save.
    """
    directory = Path(directory)
    with output_errors(directory):
        directory.mkdir(parents=True, exist_ok=True)
        _sweep(directory / "write-probe")  # a probe a killed run left
        fd, probe = tempfile.mkstemp(prefix=f".write-probe.{_owner()}.", suffix=_TMP,
                                     dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(bytes(probe_bytes))
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            os.unlink(probe)
    return directory


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (``host-pid``) is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition("-")
    if host != _HOST or not pid.isdigit() or os.name == "nt":
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove(path: Path) -> None:
    """Delete a file or a directory tree, whichever ``path`` is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _sweep(target: Path) -> None:
    """Clear what killed writers of this host left next to ``target``: unfinished temporary
    files and directories go; a previous version that an interrupted swap had moved aside
    is put back when ``target`` is missing."""
    prefix = f".{target.name}."
    for path in sorted(target.parent.glob(f"{glob.escape(prefix)}*{_TMP}")):
        owner = path.name[len(prefix):-len(_TMP)].rpartition(".")[0]
        if not _dead_here(owner):
            continue
        if path.name.endswith(f".old{_TMP}") and not os.path.lexists(target):
            os.replace(path, target)
        else:
            _remove(path)


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the OS or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if function(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished ``tmp`` at ``target``; readers of ``target`` see the previous complete
    version or the new one. Where an existing ``target`` cannot be exchanged atomically it is
    moved aside first (a crash in between leaves it aside, and the next write puts it back)."""
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    if _exchange(tmp, target):
        _remove(tmp)  # now the previous version
        return
    backup = target.with_name(f".{target.name}.{_owner()}.old{_TMP}")
    os.replace(target, backup)
    os.replace(tmp, target)
    _remove(backup)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    The temporary directory is a sibling of ``target`` (same file system), so the final
    swap is atomic: readers see either the old complete artifact or the new one, never a
    half-written directory. A block that fails removes it; what a killed process left is
    removed by the next write of the same ``target``. A full disk or an unwritable location
    raises :class:`OutputError`.
    """
    target = Path(target)
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not overwrite:
            raise ArtifactError(
                f"{target} already exists; pass overwrite=True or choose another path.")
        _sweep(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_owner()}.", suffix=_TMP,
                                    dir=target.parent))
        try:
            yield tmp
            _swap_in(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary sibling of ``path`` (``.NAME.HOST-PID.XXXX.tmp``) that replaces it when the
    block succeeds; a failed block removes it, and temporaries of killed writers of this host
    are swept first."""
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=_TMP,
                                   dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_file(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


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


def read_config(directory: str | os.PathLike[str], name: str = "config.json") -> dict[str, Any]:
    """An artifact's JSON config, refused when a newer format version wrote it."""
    path = Path(directory) / name
    config = read_json(path)
    check_format_version(config, Path(directory))
    return config


def write_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save numpy arrays to a safetensors file (atomically); return its sha256."""
    arrays = {key: np.ascontiguousarray(value) for key, value in tensors.items()}
    with atomic_file(Path(path)) as tmp:
        save_file(arrays, str(tmp), metadata=dict(metadata) if metadata else None)
        return sha256_file(tmp)


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
