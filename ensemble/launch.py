"""How this process was launched: alone, or as one of several (``torchrun``, ``accelerate
launch``), for the commands that must run as one process.

Example:
    >>> world_size({"WORLD_SIZE": "2"})
    2
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .exceptions import ConfigError

__all__ = ["require_single_process", "world_size"]


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of processes the launcher started (``WORLD_SIZE``, set by ``torchrun``
    and ``accelerate launch``); 1 when started directly."""
    value = (os.environ if environ is None else environ).get("WORLD_SIZE", "1")
    try:
        return max(1, int(value))
    except ValueError:
        return 1


def require_single_process(what: str, fix: str) -> None:
    """Raise :class:`ConfigError` when launched as one of several processes: ``what`` would
    have every process write the same artifacts; ``fix`` says what to do instead."""
    processes = world_size()
    if processes > 1:
        rank = os.environ.get("RANK", "?")
        raise ConfigError(
            f"{what} runs in one process, but this is process {rank} of {processes} "
            f"(WORLD_SIZE={processes}, set by torchrun or accelerate launch): every process "
            f"would write the same files. {fix}"
        )
