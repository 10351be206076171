"""Decorator-based combiner registry (timm style): adding a combiner never edits this file.

Example:
    >>> from ensemble.combiners import Combiner, register_combiner
    >>> @register_combiner("my_combiner")  # doctest: +SKIP
    ... class MyCombiner(Combiner): ...
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._io import read_json
from ..exceptions import ArtifactError, ConfigError, UnknownNameError

if TYPE_CHECKING:
    from .base import Combiner

__all__ = [
    "create_combiner",
    "get_combiner_class",
    "list_combiners",
    "load_combiner",
    "register_combiner",
]

_REGISTRY: dict[str, type[Combiner]] = {}
_T = TypeVar("_T", bound="type[Combiner]")


def register_combiner(name: str) -> Callable[[_T], _T]:
    """Class decorator: make a :class:`Combiner` subclass available under ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a combiner name must be a non-empty string, got {name!r}.")

    def decorate(cls: _T) -> _T:
        known = _REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ConfigError(
                f"combiner name {name!r} is already taken by {known.__module__}."
                f"{known.__qualname__}; choose another name."
            )
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_combiners() -> list[str]:
    """Registered combiner names, sorted."""
    return sorted(_REGISTRY)


def get_combiner_class(name: str) -> type[Combiner]:
    """The class registered under ``name``; unknown names suggest close matches."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {close!r}?" if close else ""
        raise UnknownNameError(
            f"unknown combiner {name!r}.{hint} Registered: {list_combiners()!r}."
        ) from None


def create_combiner(name: str, **params: Any) -> Combiner:
    """Instantiate the combiner registered under ``name`` with hyper-parameters ``params``.

    Example:
        >>> create_combiner("voting", method="geometric")
        VotingCombiner(method='geometric')
    """
    cls = get_combiner_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"combiner {name!r} has no parameter(s) {unknown!r}; it accepts {sorted(accepted)!r}."
        )
    return cls(**params)


def load_combiner(directory: str | os.PathLike[str]) -> Combiner:
    """Load any saved combiner, dispatching on the registry name in its ``config.json``."""
    config = read_json(Path(directory) / "config.json")
    name = config.get("name")
    if not isinstance(name, str):
        raise ArtifactError(f"{directory}/config.json names no combiner ('name' is {name!r}).")
    return get_combiner_class(name).load(directory)
