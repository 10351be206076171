"""Hyper-parameter checks shared by the combiners; each raises :class:`ConfigError`."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from ..exceptions import ConfigError

__all__ = ["check_choice", "check_positive_ints", "check_rate"]


def check_rate(name: str, value: Any) -> None:
    """``0 <= value < 1``."""
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")


def check_choice(name: str, value: Any, choices: Collection[str]) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {sorted(choices)!r}, got {value!r}.")


def check_positive_ints(owner: object, names: Iterable[str]) -> None:
    """Each attribute ``names`` of ``owner`` is an integer >= 1."""
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
