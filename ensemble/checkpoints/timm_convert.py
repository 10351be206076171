"""Convert a plain state dict saved by another library into a timm ``local-dir`` folder.

The converted folder (``config.json`` + ``model.safetensors``) lives in :func:`cache_dir`,
under a name keyed by the source file's sha256, and is reused on later calls.

Example:
    >>> folder = convert_timm_state_dict(  # doctest: +SKIP
    ...     "efficientnet-lite0.pth", model_name="tf_efficientnet_lite0.in1k")
    >>> timm.create_model(f"local-dir:{folder}", pretrained=True)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_directory, sha256_file, write_json
from ..exceptions import ArtifactError, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["CACHE_ENV", "cache_dir", "convert_timm_state_dict"]

logger = logging.getLogger(__name__)

#: Environment variable overriding the cache folder of converted checkpoints.
CACHE_ENV = "ENSEMBLE_CACHE"

_CONVERTER_VERSION = 1
_TENSOR_KINDS = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})


def cache_dir() -> Path:
    """Folder for converted checkpoints: ``$ENSEMBLE_CACHE`` or the user cache dir.

    Example:
        >>> cache_dir().name  # doctest: +SKIP
        'ensemble'
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ensemble"))


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._") or "model"


def _timm_folder_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def convert_timm_state_dict(
    source: str | os.PathLike[str],
    *,
    model_name: str,
    output_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a state dict saved by another library into a timm ``local-dir`` folder.

    The source tensors must correspond one to one, *in order*, to the ``state_dict()`` of
    ``timm.create_model(model_name)``; counts, shapes and tensor kinds (``weight``, ``bias``,
    ``running_mean``, ...) are checked and any mismatch raises
    :class:`~ensemble.exceptions.ArtifactError`. The file (``.pth``/``.bin``, optionally wrapped
    in ``{"state_dict": ...}``) is read with ``torch.load(weights_only=True)``, never fully
    unpickled; ``.safetensors`` is refused because it does not keep tensor order. The folder
    gets ``model.safetensors`` and a ``config.json`` whose ``pretrained_cfg`` is timm's own
    entry for ``model_name`` (mean/std, input size, interpolation, crop).

    By default the folder lives in :func:`cache_dir` under a name keyed by the source file's
    sha256, is written atomically, and is reused on later calls.

    Example:
        >>> folder = convert_timm_state_dict(  # doctest: +SKIP
        ...     "efficientnet-lite0.pth", model_name="tf_efficientnet_lite0.in1k")
        >>> timm.create_model(f"local-dir:{folder}", pretrained=True)  # doctest: +SKIP
    """
    source = Path(source)
    if not source.is_file():
        raise ArtifactError(f"State-dict file {source} does not exist.")
    stat = source.stat()
    digest = _file_digest(str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    if output_dir is None:
        target = (cache_dir() / "timm"
                  / f"{_safe_name(model_name)}-{digest[:16]}-v{_CONVERTER_VERSION}")
    else:
        target = Path(output_dir)
    if not overwrite and _timm_folder_complete(target):
        return target

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if not overwrite and _timm_folder_complete(target):  # another process finished first
            return target
        started = time.perf_counter()
        model = _create_timm_model(model_name)
        expected = model.state_dict()
        mapped = _map_in_order(_load_state_dict(source), expected, source=source,
                               model_name=model_name)
        try:
            model.load_state_dict(mapped, strict=True)
        except RuntimeError as err:  # belt and braces: the shape checks above should catch this
            raise ArtifactError(f"{source} does not load into timm {model_name!r}: {err}") from err
        config = _timm_config(model, model_name)
        config["ensemble_conversion"] = {
            "converter_version": _CONVERTER_VERSION,
            "source_file": source.name,
            "source_sha256": digest,
        }
        import safetensors.torch

        with atomic_directory(target) as tmp:
            safetensors.torch.save_file({k: v.contiguous() for k, v in mapped.items()},
                                        str(tmp / "model.safetensors"), metadata={"format": "pt"})
            write_json(tmp / "config.json", config)
        logger.info("Converted %s to timm %s in %.1fs: %s", source.name, model_name,
                    time.perf_counter() - started, target)
    return target


def _create_timm_model(model_name: str) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(model_name, pretrained=False)
    except RuntimeError as err:
        raise ConfigError(f"timm cannot build {model_name!r}: {err}") from err


def _load_state_dict(source: Path) -> Mapping[str, torch.Tensor]:
    import torch

    if source.suffix == ".safetensors":
        raise ConfigError(
            f"{source}: safetensors files do not keep tensor order, so they cannot be mapped "
            "onto timm names by position; pass a torch .pth/.bin state dict."
        )
    try:
        state: Any = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise ArtifactError(
            f"{source} is not a readable weights-only state dict ({err}); reinstall the package "
            "that ships it."
        ) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and set(state) == {wrapper}:
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ArtifactError(f"{source} does not hold a mapping of names to tensors.")
    return state


def _tensor_kind(key: str) -> str | None:
    kind = key.rsplit(".", 1)[-1]
    return kind if kind in _TENSOR_KINDS else None


def _map_in_order(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    *,
    source: Path,
    model_name: str,
) -> dict[str, torch.Tensor]:
    if len(state) != len(expected):
        raise ArtifactError(
            f"{source} holds {len(state)} tensors but timm {model_name!r} has {len(expected)}; "
            "the file is corrupt or for another architecture. Reinstall the mirror package."
        )
    mapped: dict[str, torch.Tensor] = {}
    for index, ((src_key, tensor), (dst_key, reference)) in enumerate(
        zip(state.items(), expected.items(), strict=True)
    ):
        if tuple(tensor.shape) != tuple(reference.shape):
            raise ArtifactError(
                f"{source}: tensor #{index} {src_key!r} has shape {tuple(tensor.shape)} but timm "
                f"{model_name!r} expects {tuple(reference.shape)} for {dst_key!r}; the file is "
                "corrupt or for another architecture. Reinstall the mirror package."
            )
        src_kind, dst_kind = _tensor_kind(src_key), _tensor_kind(dst_key)
        if src_kind and dst_kind and src_kind != dst_kind:
            raise ArtifactError(
                f"{source}: tensor #{index} {src_key!r} is a {src_kind} but timm {model_name!r} "
                f"expects a {dst_kind} ({dst_key!r}) there; the tensor order does not match."
            )
        mapped[dst_key] = tensor.detach().to(dtype=reference.dtype)
    return mapped


def _timm_config(model: torch.nn.Module, model_name: str) -> dict[str, Any]:
    """The ``config.json`` that timm's ``local-dir:`` source reads (see ``save_for_hf``)."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    cfg = get_pretrained_cfg(model_name)
    pretrained = dict(cfg.to_dict(remove_source=True, remove_null=True)) if cfg else {}
    architecture = pretrained.pop("architecture", None) or split_model_name_tag(model_name)[0]
    num_classes = int(getattr(model, "num_classes", pretrained.get("num_classes", 0)))
    pretrained["num_classes"] = num_classes
    config: dict[str, Any] = {"architecture": architecture, "num_classes": num_classes}
    num_features = getattr(model, "num_features", None)
    if isinstance(num_features, int):
        config["num_features"] = num_features
    config["pretrained_cfg"] = pretrained
    return config

