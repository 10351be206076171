"""Reading plain configuration values into typed dataclass fields (one owner).

YAML 1.1 (PyYAML) reads ``1e-3`` as the *string* ``"1e-3"``; recipes, ``--set`` overrides
and ``training:`` mappings all go through :func:`number_from_text`, so a number written that
way is read as the number it spells, and anything else is refused naming the key.
"""

from __future__ import annotations

import typing
from typing import Any

from .exceptions import ConfigError

__all__ = ["number_from_text"]


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
