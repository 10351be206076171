"""Runs one command with a writer patched to die by SIGKILL halfway through a file.

Usage: python _kill_worker.py MODULE:FUNCTION NEEDLE COMMAND ARGS...
  MODULE:FUNCTION  a writer given the path of the file it writes (e.g.
                   ensemble._io:save_file); the call whose path contains NEEDLE writes the
                   file, cuts it in half and kills the process
  COMMAND          ``cli ARGS`` runs the ensemble command; ``save-logits TARGET VERSION``
                   saves ``logits_version(VERSION)`` to TARGET
Special FUNCTION values: ``after-swap`` kills once the new version is in place, before the
previous one is deleted; ``between-moves`` disables the atomic exchange and kills after the
previous version was moved aside.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import _io


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def logits_version(version: int) -> Any:
    """A small LogitSet whose values say which version it is."""
    from ensemble.logits import LogitSet

    values = np.full((4, 3), float(version), dtype=np.float32)
    return LogitSet({"image": values, "text": -values}, ["a", "b", "c"],
                    ids=[f"v{version}-{i}" for i in range(4)])


def _half_written(real: Callable[..., Any], needle: str) -> Callable[..., Any]:
    def writer(*args: Any, **kwargs: Any) -> Any:
        path = next((a for a in args if isinstance(a, (str, os.PathLike))), "")
        if needle not in str(path):
            return real(*args, **kwargs)
        real(*args, **kwargs)
        os.truncate(path, Path(path).stat().st_size // 2)
        die()

    return writer


def _patch(where: str, needle: str) -> None:
    if where == "after-swap":
        real_remove = _io._remove
        _io._remove = lambda path: die() if needle in str(path) else real_remove(path)
    elif where == "between-moves":
        real_replace = os.replace
        _io._exchange = lambda first, second: False

        def replace(source: Any, destination: Any) -> None:
            real_replace(source, destination)
            if str(destination).endswith(".old.tmp"):
                die()

        _io.os.replace = replace  # type: ignore[attr-defined]
    else:
        module_name, name = where.split(":")
        module = importlib.import_module(module_name)
        setattr(module, name, _half_written(getattr(module, name), needle))


def main(argv: list[str]) -> int:
    where, needle, command, *args = argv
    _patch(where, needle)
    if command == "cli":
        from ensemble.cli import main as cli

        return cli(args)
    target, version = args
    logits_version(int(version)).save(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
