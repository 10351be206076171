"""The expert registry: every kind of expert is a class registered under a short name.

Built in: ``timm`` (images), ``transformers`` (texts), ``transformers-audio`` (audio clips),
``tfidf`` (texts, TF-IDF n-grams + a linear model), ``sklearn`` (tabular column groups) and
``precomputed`` (scores computed elsewhere). A new kind is one file with
``@register_expert("kind")`` on an :class:`~ensemble.experts.Expert` subclass; nothing else
in the library changes.

Example:
    >>> from ensemble.experts import create_expert, list_experts
    >>> "timm" in list_experts()
    True
    >>> expert = create_expert("timm", "test_resnet", column="photo", labels=["cat", "dog"],
    ...                        pretrained=False)
    >>> expert.column, expert.modality
    ('photo', 'image')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from .base import Expert

__all__ = ["EXPERTS", "create_expert", "get_expert_class", "list_experts", "register_expert"]

_T = TypeVar("_T", bound="type[Expert]")

#: Every expert class, by kind name.
EXPERTS: Registry[type[Expert]] = Registry("expert kind", builtins={
    "timm": "ensemble.experts.timm_image",
    "transformers": "ensemble.experts.hf_text",
    "transformers-audio": "ensemble.experts.hf_audio",
    "sklearn": "ensemble.experts.sklearn_tabular",
    "tfidf": "ensemble.experts.sklearn_text",
    "precomputed": "ensemble.experts.precomputed",
    "bagged": "ensemble.experts.bagged",
})


def register_expert(name: str) -> Callable[[_T], _T]:
    """Class decorator: make an :class:`~ensemble.experts.Expert` subclass available as
    ``create_expert(name, ...)``, in recipes (``type: name``) and in saved bundles."""
    return EXPERTS.register(name)


def list_experts() -> list[str]:
    """Registered expert kinds, sorted."""
    return EXPERTS.names()


def get_expert_class(name: str) -> type[Expert]:
    """The class registered under ``name``; unknown names suggest close matches."""
    return EXPERTS.get(name)


def accepted_arguments(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` accepts (for messages and recipe checks)."""
    parameters = inspect.signature(cls.__init__).parameters
    return [name for name, p in parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def create_expert(kind: str, checkpoint: str | None = None, /, **options: Any) -> Expert:
    """A new, unfitted expert of ``kind``.

    ``checkpoint`` is the pretrained model for kinds that have one (``timm``,
    ``transformers``); ``options`` are the class's keyword arguments, at least ``column``
    (the input column it reads) and ``labels`` (a :class:`~ensemble.labels.LabelSpace` or
    class names). Unknown options are refused with the accepted ones listed.

    Example:
        >>> create_expert("sklearn", column="meta", labels=["a", "b"]).modality
        'tabular'
    """
    cls = get_expert_class(kind)
    accepted = accepted_arguments(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"expert kind {kind!r} has no option(s) {unknown!r}; it accepts {sorted(accepted)!r}."
        )
    if checkpoint is None:
        return cls(**options)
    if "checkpoint" not in accepted:
        raise ConfigError(
            f"expert kind {kind!r} takes no checkpoint (got {checkpoint!r}); drop it, it is "
            f"configured by {sorted(accepted)!r}."
        )
    return cls(checkpoint, **options)
