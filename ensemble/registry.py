"""One registry pattern for every pluggable kind (experts, combiners, modalities).

A :class:`Registry` maps names to classes, timm-style: ``register`` is a class decorator
that records the name on the class (``registry_name``), ``get`` resolves a name and
suggests close matches for unknown ones, ``names`` lists what is registered. Built-in
kinds may be named with the module that registers them (``builtins``): that module is
imported on first use, so a registry never costs the imports of kinds nobody uses (the
torch-free ONNX runtime loads a tabular expert without importing the torch ones).

Example:
    >>> widgets = Registry("widget")
    >>> @widgets.register("round")
    ... class Round:
    ...     pass
    >>> widgets.get("round").registry_name, widgets.names()
    ('round', ['round'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from .exceptions import ConfigError, DependencyError, UnknownNameError
from .typed_values import did_you_mean

__all__ = ["Registry"]

_T = TypeVar("_T", bound=type)


class Registry(Generic[_T]):
    """Names -> classes of one kind (``what`` names the kind in error messages)."""

    def __init__(self, what: str, *, builtins: Mapping[str, str] | None = None) -> None:
        self.what = what
        self._classes: dict[str, _T] = {}
        self._builtins = dict(builtins or {})

    def _import_builtin(self, name: str) -> None:
        module = self._builtins.get(name)
        if module is None or name in self._classes:
            return
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise DependencyError(
                f"{self.what} {name!r} needs {err.name or 'a module'} that is not installed "
                f"({err}); install it to use {name!r}."
            ) from err

    def register(self, name: str) -> Callable[[_T], _T]:
        """Class decorator: make ``cls`` available under ``name``."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(f"a {self.what} name must be a non-empty string, got {name!r}.")

        def decorate(cls: _T) -> _T:
            known = self._classes.get(name)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise ConfigError(
                    f"{self.what} name {name!r} is already taken by {known.__module__}."
                    f"{known.__qualname__}; choose another name."
                )
            cls.registry_name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Forget ``name`` (e.g. a plugin registered by a test); unknown names are ignored."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        """Registered names (built-ins included), sorted."""
        for name in self._builtins:
            self._import_builtin(name)
        return sorted(self._classes)

    def get(self, name: str) -> _T:
        """The class registered under ``name``; unknown names suggest close matches."""
        if isinstance(name, str):
            self._import_builtin(name)
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            # Listed without importing the built-ins (they may need what is not installed).
            known = sorted(set(self._classes) | set(self._builtins))
            hint = did_you_mean(str(name), known, cutoff=0.5)
            raise UnknownNameError(
                f"unknown {self.what} {name!r}.{hint} Registered: {known!r}."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._builtins
