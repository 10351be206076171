"""The model libraries a checkpoint name can be resolved for, and what each one needs.

A :class:`ModelLibrary` tells the one resolver (:mod:`.resolve`) how a Hub name is
recognised, which cached files make a Hub snapshot usable offline, which offline-mirror
modality applies, which environment variables keep it off the Hub, and how a local folder
is handed back. :data:`TIMM` (images), :data:`TRANSFORMERS` (text) and
:data:`TRANSFORMERS_AUDIO` (audio classifiers, which need a feature extractor rather than a
tokenizer) are the built-in instances. Another library is one more instance added to
:data:`MODEL_LIBRARIES` (and its modality to :data:`Modality`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..exceptions import ConfigError, UnknownNameError
from .hub import HUB_PREFIX, OFFLINE_ENV, HubTarget, split_revision, valid_repo_id

__all__ = [
    "LOCAL_PREFIX",
    "MODALITIES",
    "MODEL_LIBRARIES",
    "TIMM",
    "TRANSFORMERS",
    "TRANSFORMERS_AUDIO",
    "WEIGHT_FILES",
    "Modality",
    "ModelLibrary",
    "get_model_library",
    "timm_hub_target",
    "transformers_hub_target",
]

#: The offline-mirror modalities of the known libraries.
Modality = Literal["image", "text", "audio"]

#: Prefix of an explicit local folder (``local-dir:/path``), as timm spells it.
LOCAL_PREFIX = "local-dir:"

#: transformers weight files, any one of which (all shards of an index) makes weights usable.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _strings(value: Any) -> tuple[str, ...] | None:
    """``value`` (a string or strings) as a tuple of non-empty strings, or None if it is not."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        return None
    items = tuple(value)
    return items if all(isinstance(item, str) and item.strip() for item in items) else None


@dataclass(frozen=True, kw_only=True)
class ModelLibrary:
    """What resolving a checkpoint name needs to know about one model library.

    Attributes:
        name: the library's key in :data:`MODEL_LIBRARIES` (``"timm"``).
        modality: which offline mirrors apply (:func:`~.mirrors.list_mirrors`), and the word
            used in messages (``"image"``).
        hub_target: recognises a Hub name: returns its :class:`~.hub.HubTarget`, or None
            after appending to ``attempts`` why the name cannot be on the Hub.
        snapshot_files: file groups a cached Hub snapshot must hold, one file of each group,
            to be used without the network (the first group should be ``config.json``).
        offline_switches: environment variables that, when true, keep this library off the Hub.
        folder_hint: what a local folder must hold and how to write one (for messages).
        folder_prefix: put before a local folder's absolute path when it is returned
            (``"local-dir:"`` for timm, nothing for transformers).

    Example:
        >>> TIMM.modality, TRANSFORMERS.folder_prefix
        ('image', '')
    """

    name: str
    modality: Modality
    hub_target: Callable[[str, list[str]], HubTarget | None] = field(compare=False)
    snapshot_files: tuple[tuple[str, ...], ...]
    offline_switches: tuple[str, ...] = (OFFLINE_ENV, "HF_HUB_OFFLINE")
    folder_hint: str
    folder_prefix: str = ""

    def __post_init__(self) -> None:
        for attribute in ("name", "modality", "folder_hint"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"ModelLibrary.{attribute} must be a non-empty string, got {value!r}."
                )
        if not callable(self.hub_target):
            raise ConfigError(
                f"ModelLibrary.hub_target must be callable, got {self.hub_target!r}."
            )
        raw: Any = self.snapshot_files
        groups = tuple(_strings(group) for group in raw) if isinstance(raw, Iterable) else ()
        if not groups or not all(groups):
            raise ConfigError(
                "ModelLibrary.snapshot_files must be non-empty groups of file names, e.g. "
                f"(('config.json',), ('model.safetensors',)); got {self.snapshot_files!r}."
            )
        switches = _strings(self.offline_switches)
        if switches is None:
            raise ConfigError(
                "ModelLibrary.offline_switches must be environment variable names, got "
                f"{self.offline_switches!r}."
            )
        if not isinstance(self.folder_prefix, str):
            raise ConfigError(
                f"ModelLibrary.folder_prefix must be a string, got {self.folder_prefix!r}."
            )
        object.__setattr__(self, "snapshot_files", groups)
        object.__setattr__(self, "offline_switches", switches)


def timm_hub_target(name: str, attempts: list[str]) -> HubTarget | None:
    """Where a timm name (``resnet18``, ``resnet18.a1_in1k``) or Hub id has its weights.

    Example:
        >>> timm_hub_target("resnet18", [])  # doctest: +SKIP
        HubTarget(returned='resnet18', repo_id='timm/resnet18.a1_in1k', revision=None, url=None)
    """
    explicit = name.lower().startswith(HUB_PREFIX)
    if explicit or "/" in name:
        spec = name[len(HUB_PREFIX):] if explicit else name
        repo_id, revision = split_revision(spec)
        if not valid_repo_id(repo_id):
            attempts.append(f"Hugging Face Hub: {repo_id!r} is not a valid repository id")
            return None
        return HubTarget(returned=HUB_PREFIX + spec, repo_id=repo_id, revision=revision)

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
        repo_id, revision = split_revision(cfg.hf_hub_id)
        return HubTarget(returned=name, repo_id=repo_id, revision=revision)
    return HubTarget(returned=name, url=cfg.url)


def transformers_hub_target(name: str, attempts: list[str]) -> HubTarget | None:
    """A Hub repository id, with any ``hf-hub:`` prefix dropped.

    Example:
        >>> transformers_hub_target("hf-hub:acme/bert", [])
        HubTarget(returned='acme/bert', repo_id='acme/bert', revision=None, url=None)
    """
    repo_id = name[len(HUB_PREFIX):] if name.lower().startswith(HUB_PREFIX) else name
    if not valid_repo_id(repo_id):
        attempts.append(f"Hugging Face Hub: {repo_id!r} is not a valid repository id")
        return None
    return HubTarget(returned=repo_id, repo_id=repo_id)


#: timm image classifiers: resolves to a string for ``timm.create_model(..., pretrained=True)``.
TIMM = ModelLibrary(
    name="timm",
    modality="image",
    hub_target=timm_hub_target,
    snapshot_files=(("config.json",), ("model.safetensors", "pytorch_model.bin")),
    offline_switches=(OFFLINE_ENV, "HF_HUB_OFFLINE"),
    folder_hint="a timm folder with config.json + model.safetensors, as written by "
                "timm.models.save_for_hf(model, dir, safe_serialization=True)",
    folder_prefix=LOCAL_PREFIX,
)

#: transformers text models: resolves to a folder or Hub id for ``AutoModel*.from_pretrained``.
TRANSFORMERS = ModelLibrary(
    name="transformers",
    modality="text",
    hub_target=transformers_hub_target,
    snapshot_files=(("config.json",), WEIGHT_FILES, ("tokenizer_config.json", "tokenizer.json")),
    offline_switches=(OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    folder_hint="a transformers folder with config.json, weights and tokenizer files, as "
                "written by model.save_pretrained(dir) and tokenizer.save_pretrained(dir)",
)

#: transformers audio classifiers (wav2vec2, HuBERT, AST, ...): a folder or Hub id for
#: ``AutoModelForAudioClassification`` / ``AutoFeatureExtractor.from_pretrained``.
TRANSFORMERS_AUDIO = ModelLibrary(
    name="transformers-audio",
    modality="audio",
    hub_target=transformers_hub_target,
    snapshot_files=(("config.json",), WEIGHT_FILES, ("preprocessor_config.json",)),
    offline_switches=(OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    folder_hint="a transformers folder with config.json, weights and "
                "preprocessor_config.json, as written by model.save_pretrained(dir) and "
                "feature_extractor.save_pretrained(dir)",
)

#: The known libraries by name.
MODEL_LIBRARIES: Mapping[str, ModelLibrary] = MappingProxyType(
    {library.name: library for library in (TIMM, TRANSFORMERS, TRANSFORMERS_AUDIO)}
)

#: The modalities offline mirrors may be registered for: one per known library.
MODALITIES: tuple[str, ...] = tuple(
    dict.fromkeys(library.modality for library in MODEL_LIBRARIES.values())
)


def get_model_library(library: str | ModelLibrary) -> ModelLibrary:
    """The :class:`ModelLibrary` named ``library`` (an instance is returned as is).

    Raises :class:`~ensemble.exceptions.UnknownNameError` for an unknown name, suggesting
    close matches.

    Example:
        >>> get_model_library("timm") is TIMM
        True
    """
    if isinstance(library, ModelLibrary):
        return library
    found = MODEL_LIBRARIES.get(library) if isinstance(library, str) else None
    if found is not None:
        return found
    known = sorted(MODEL_LIBRARIES)
    close = difflib.get_close_matches(str(library), known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"Unknown model library {library!r}.{hint} Known: {', '.join(map(repr, known))}."
    )
