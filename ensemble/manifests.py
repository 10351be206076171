"""Bundle and export directories: the sha256 ``manifest.json`` and safe paths inside them.

Torch-free: used by :class:`~ensemble.predictor.FusionPredictor` bundles, by ONNX exports
and by the runtime that loads them.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ._io import (
    FORMAT_VERSION,
    check_format_version,
    library_versions,
    read_json,
    sha256_file,
    write_json,
)
from .exceptions import ArtifactError

__all__ = ["MANIFEST", "inside_bundle", "require_bundle_directory", "verify_bundle",
           "write_manifest"]

MANIFEST = "manifest.json"


def inside_bundle(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that are absolute or leave ``root``."""
    pure = PurePosixPath(relative)
    if (not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative
            or ":" in relative):
        raise ArtifactError(f"{root}: the path {relative!r} leaves the bundle; refusing it.")
    path = root / pure
    if not path.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{root}: {relative!r} resolves outside the bundle; refusing it.")
    return path


def require_bundle_directory(root: str | os.PathLike[str], *, what: str = "bundle") -> Path:
    """``root`` as a Path, refused when it is not a folder, or is a run folder (naming the
    bundle inside it). Cheap: reads no file, so the CLI checks it before loading anything."""
    root = Path(root)
    if not root.is_dir() and what == "export":
        raise ArtifactError(f"{str(root)!r} is not an export directory; give the folder written "
                            "by `ensemble export BUNDLE --out DIR` or FusionPredictor.export().")
    if not root.is_dir():
        raise ArtifactError(f"{str(root)!r} is not a bundle directory; give the folder written "
                            "by `ensemble run` or FusionPredictor.save() (e.g. "
                            "runs/<recipe>/bundle).")
    if not (root / MANIFEST).is_file() and (root / "bundle" / MANIFEST).is_file():
        raise ArtifactError(f"{root} is a run folder, not a bundle; give its bundle: "
                            f"{root / 'bundle'}.")
    return root


def write_manifest(directory: Path) -> None:
    """Write ``manifest.json``: the sha256 of every file under ``directory``."""
    files = {path.relative_to(directory).as_posix(): sha256_file(path)
             for path in sorted(directory.rglob("*")) if path.is_file()}
    write_json(directory / MANIFEST, {
        "kind": "manifest",
        "format_version": FORMAT_VERSION,
        "files": files,
        "versions": library_versions(),
    })


def verify_bundle(root: Path, *, what: str = "bundle") -> dict[str, str]:
    """Check every file of a bundle (or an export: ``what``) against ``manifest.json``;
    return the manifest's files.

    Refuses missing or modified files, files the manifest does not list, symlinks and paths
    that leave the bundle.
    """
    require_bundle_directory(root, what=what)
    redo = "Re-save it." if what == "bundle" else "Export it again."
    manifest = read_json(root / MANIFEST)
    check_format_version(manifest, root / MANIFEST)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{root}/{MANIFEST} lists no files; the {what} is incomplete.")
    for relative, digest in files.items():
        path = inside_bundle(root, str(relative))
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"{root}: {relative} is missing (or a symlink); the {what} is "
                                f"incomplete. {redo}")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{root}: {relative} does not match its sha256 in {MANIFEST}; "
                                f"the {what} was modified after it was written. {redo}")
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise ArtifactError(f"{root}: {relative} is a symlink; a {what} holds plain "
                                "files only.")
        if path.is_file() and relative != MANIFEST and relative not in files:
            raise ArtifactError(f"{root}: {relative} is not listed in {MANIFEST}; remove it "
                                f"or write the {what} again.")
    return {str(k): str(v) for k, v in files.items()}
