"""Reading plain configuration values into typed dataclass fields (one owner).

YAML 1.1 (PyYAML) reads ``1e-3`` as the *string* ``"1e-3"``; recipes, ``--set`` overrides
and ``training:`` mappings all go through :func:`number_from_text`, so a number written that
way is read as the number it spells, and anything else is refused naming the key.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from typing import Any

from .exceptions import ConfigError

__all__ = ["did_you_mean", "number_from_text", "unknown_key"]


def did_you_mean(value: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` for the closest of ``known`` to ``value``, or ``""``.

    Example:
        >>> did_you_mean("epohcs", ["epochs", "seed"])
        " Did you mean 'epochs'?"
    """
    close = difflib.get_close_matches(str(value), list(known), n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_key(key: str, allowed: Iterable[str], where: str) -> ConfigError:
    """The error for an unknown configuration key ``key`` (dotted) among ``allowed``."""
    allowed = sorted(allowed)
    name = key.rsplit(".", 1)[-1]
    return ConfigError(f"unknown key {key!r}.{did_you_mean(name, allowed)} Allowed keys in "
                       f"{where}: {allowed!r}.")


def number_from_text(annotation: Any, value: Any, key: str) -> Any:
    """``value`` as a number when the field ``annotation`` is numeric (``int``, ``float``, or
    an optional of them) and ``value`` is a string spelling one; other values unchanged.

    Example:
        >>> number_from_text(float, "1e-3", "learning_rate")
        0.001
        >>> number_from_text(int | None, "8", "batch_size")
        8
    """
    if not isinstance(value, str):
        return value
    numeric = {int, float} & set(typing.get_args(annotation) or (annotation,))
    if not numeric:
        return value
    kind = "float" if float in numeric else "int"
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(
            f"{key} must be {kind}, got the string {value!r}; write a number (e.g. 0.001 or "
            "1.0e-3)."
        ) from None
    if kind == "int":
        if not number.is_integer():
            raise ConfigError(f"{key} must be a whole number, got {value!r}.")
        return int(number)
    return number
