"""Decorator-based combiner registry (timm style): adding a combiner never edits this file.

Example:
    >>> from ensemble.combiners import Combiner, register_combiner
    >>> @register_combiner("my_combiner")  # doctest: +SKIP
    ... class MyCombiner(Combiner): ...
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._io import read_json
from ..exceptions import ArtifactError, ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from .base import Combiner

_T = TypeVar("_T", bound="type[Combiner]")

__all__ = [
    "COMBINERS",
    "create_combiner",
    "get_combiner_class",
    "list_combiners",
    "load_combiner",
    "register_combiner",
]

#: Every combiner class, by name (see :class:`ensemble.registry.Registry`).
COMBINERS: Registry[type[Combiner]] = Registry("combiner")


def register_combiner(name: str) -> Callable[[_T], _T]:
    """Class decorator: make a :class:`Combiner` subclass available under ``name``."""
    return COMBINERS.register(name)


def list_combiners() -> list[str]:
    """Registered combiner names, sorted."""
    return COMBINERS.names()


def get_combiner_class(name: str) -> type[Combiner]:
    """The class registered under ``name``; unknown names suggest close matches."""
    return COMBINERS.get(name)


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
