"""How an error message tells the user to change a ``load_multimodal`` option.

The same options are given from Python (``image_column="path"``), from a recipe
(``data.options``) and on the command line (``ensemble evaluate --bundle ... --image-column
path``, or ``--data-option KEY=VALUE`` for the others), so a message names the keyword and
the flag.

Example:
    >>> keyword_hint("image_column", "path")
    "image_column='path' (CLI: --image-column path)"
    >>> keyword_hint("class_names", ["cat", "dog"])
    "class_names=['cat', 'dog'] (CLI: --data-option 'class_names=[cat, dog]')"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CLI_FLAGS", "keyword_hint"]

#: ``load_multimodal`` keywords that ``ensemble evaluate --bundle`` takes as their own flags;
#: every other keyword is ``--data-option KEY=VALUE`` (a YAML value).
CLI_FLAGS: dict[str, str] = {
    "image_column": "--image-column",
    "text_column": "--text-column",
    "label_column": "--label-column",
    "id_column": "--id-column",
    "image_root": "--image-root",
}


def _yaml(value: Any) -> str:
    """``value`` as a YAML flow value, the form ``--data-option`` reads."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_yaml(k)}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def keyword_hint(keyword: str, value: Any = ...) -> str:
    """``keyword=value (CLI: --flag value)``; ``value=...`` shows a placeholder."""
    python = "<column>" if value is ... else repr(value)
    cli_value = "NAME" if value is ... else _yaml(value)
    flag = CLI_FLAGS.get(keyword)
    if flag is not None and value is None:
        return f"{keyword}=None (CLI: leave out {flag})"
    if flag is not None:
        return f"{keyword}={python} (CLI: {flag} {cli_value})"
    option = f"{keyword}={cli_value}"
    if any(c in option for c in " []{},"):
        option = f"'{option}'"
    return f"{keyword}={python} (CLI: --data-option {option})"
