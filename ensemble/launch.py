"""How this process was launched: alone, or as one of several (``torchrun``, ``accelerate
launch``), and the few things a command run on several processes needs from that group.

The processes talk through one of two things torch already runs, never through a layer of
our own:

* ``via="group"``: the process group accelerate sets up (gloo on CPUs, NCCL on GPUs), for
  work done data-parallel (DDP fine-tuning, sharded inference);
* ``via="store"``: only the key-value store ``torchrun`` starts for its processes, for work
  each process does on its own (whole cross-fitting folds). No process group exists then,
  so libraries that write files only on rank 0 of one (transformers' ``save_pretrained``)
  write on every process.

This module asks who is who, waits for the others and hands the main process's decisions
to them. A command on several processes writes shared files on the main process only; the
others wait (:meth:`Processes.wait`) and read.

Example:
    >>> world_size({"WORLD_SIZE": "2"})
    2
    >>> Processes().mine(range(5)), Processes(rank=1, count=2).mine(range(5))
    ([0, 1, 2, 3, 4], [1, 3])
"""

from __future__ import annotations

import itertools
import json
import os
import typing
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from .exceptions import ConfigError

__all__ = [
    "PARALLEL_MODES",
    "WAIT_LIMIT",
    "Processes",
    "alone",
    "has_accelerator_device",
    "processes",
    "require_single_process",
    "world_size",
]

T = TypeVar("T")

#: How long a process waits for the others (the process group's timeout). Generous: in a
#: fold-parallel run a process that has finished its folds waits for the slowest one.
WAIT_LIMIT = timedelta(hours=24)

#: How the processes of a run share cross-fitting: each fold data-parallel on all of them
#: (``data``), or whole folds per process (``folds``); see :func:`ensemble.crossfit.cross_fit`.
PARALLEL_MODES = ("data", "folds")

#: What launchers set to tell a process it is one of several (torchrun / accelerate launch,
#: and the MPI launchers accelerate also reads).
_LAUNCHER_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                       "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of processes the launcher started (``WORLD_SIZE``, set by ``torchrun``
    and ``accelerate launch``); 1 when started directly."""
    value = (os.environ if environ is None else environ).get("WORLD_SIZE", "1")
    try:
        return max(1, int(value))
    except ValueError:
        return 1


def has_accelerator_device() -> bool:
    """True when torch sees a GPU (CUDA, MPS or XPU); experts then train and predict there."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool(cuda or (mps and mps.is_available()) or (xpu and xpu.is_available()))


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


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of one command: ``rank`` of ``count``.

    The default, ``Processes()``, is a process on its own: waiting and sharing do nothing.
    """

    rank: int = 0
    count: int = 1
    via: str = "group"

    @property
    def is_main(self) -> bool:
        """The process that writes (rank 0)."""
        return self.rank == 0

    def mine(self, items: Iterable[T]) -> list[T]:
        """This process's share of ``items``: every ``count``-th one from its rank."""
        return [item for index, item in enumerate(items) if index % self.count == self.rank]

    def wait(self) -> None:
        """Return once every process has got here (a barrier)."""
        if self.count == 1:
            return
        if self.via == "store":
            store, key = _store_key("wait")
            store.set(f"{key}/{self.rank}", "1")
            store.wait([f"{key}/{rank}" for rank in range(self.count)])
            return
        import torch.distributed as dist

        dist.barrier()

    def share(self, value: T) -> T:
        """The main process's ``value``, on every process (``value`` must be JSON-able
        and is only read on the main process)."""
        if self.count == 1:
            return value
        if self.via == "store":
            store, key = _store_key("share")
            if self.is_main:
                store.set(key, json.dumps(value))
                return value
            return typing.cast(T, json.loads(store.get(key)))
        import torch.distributed as dist

        box: list[Any] = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the main process, then on the others: for work that fills a
        cache (downloads, converted checkpoints) the others should then only read."""
        if not self.is_main:
            self.wait()
        yield
        if self.is_main:
            self.wait()


def processes(via: str = "group") -> Processes:
    """The processes this one was launched among; inside :func:`alone`, a process on its
    own. With several, ``via="group"`` joins their process group through accelerate (once
    per process, with :data:`WAIT_LIMIT` as its timeout); ``via="store"`` only connects to
    the launcher's key-value store (``MASTER_ADDR``:``MASTER_PORT``)."""
    if via not in ("group", "store"):
        raise ValueError(f"via must be 'group' or 'store', got {via!r}")
    count = world_size()
    if count == 1:
        return Processes()
    if via == "store":
        rank = int(os.environ.get("RANK", "0"))
        _connect_store(rank, count)
        return Processes(rank=rank, count=count, via="store")
    from accelerate import PartialState

    state = PartialState(cpu=not has_accelerator_device(), timeout=WAIT_LIMIT)
    return Processes(rank=state.process_index, count=state.num_processes)


#: The launcher's store (one per process) and how many keys this process has used in it:
#: every process makes the same calls in the same order, so the n-th call of each meets
#: the n-th call of the others under the same key.
_STORE: dict[str, Any] = {}


def _connect_store(rank: int, count: int) -> None:
    if "store" in _STORE:
        return
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        raise ConfigError(
            f"process {rank} of {count} has no MASTER_ADDR / MASTER_PORT to reach the others "
            "by; start the processes with torchrun or accelerate launch, which set them.")
    from torch.distributed import PrefixStore, TCPStore

    # torchrun's workers share the store its agent serves on MASTER_PORT; started otherwise,
    # the main process serves one there.
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = TCPStore(host, int(port), world_size=count, is_master=rank == 0 and not agent,
                     timeout=WAIT_LIMIT, wait_for_workers=False)
    # Keys of an earlier attempt (torchrun --max-restarts) must not satisfy this one's waits.
    attempt = (os.environ.get("TORCHELASTIC_RUN_ID", ""),
               os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    _STORE["store"] = PrefixStore("ensemble/{}/{}/".format(*attempt), store)
    _STORE["calls"] = itertools.count()


def _store_key(what: str) -> tuple[Any, str]:
    return _STORE["store"], f"{what}/{next(_STORE['calls'])}"


@contextmanager
def alone() -> Iterator[None]:
    """Run the block as if this process had been started on its own.

    For work one process does for the group (the main process fitting a combiner, one
    fold of a fold-parallel cross-fit): accelerate would otherwise shard that process's
    data loaders across processes that are not taking part, and wait for them for ever.
    Inside, the launcher's variables are hidden and accelerate's process-wide state starts
    afresh (on a GPU machine, on this process's own device); both are restored on the way
    out, and the process group itself stays up. A no-op in a process started alone.
    """
    if world_size() == 1:
        yield
        return
    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved_env = {name: os.environ.pop(name) for name in _LAUNCHER_VARIABLES
                 if name in os.environ}
    pinned = _pin_own_device(saved_env.get("LOCAL_RANK", "0"))
    states = (PartialState, AcceleratorState, GradientState)
    saved_states = [dict(state._shared_state) for state in states]
    for state in states:
        state._shared_state.clear()
    try:
        yield
    finally:
        for state, saved in zip(states, saved_states, strict=True):
            state._shared_state.clear()
            state._shared_state.update(saved)
        os.environ.update(saved_env)
        if pinned:
            os.environ.pop("ACCELERATE_TORCH_DEVICE", None)


def _pin_own_device(local_rank: str) -> bool:
    """On a CUDA machine, point accelerate at this process's own GPU (``cuda:LOCAL_RANK``,
    as in the group) rather than the first; True when it set the variable."""
    import torch

    if "ACCELERATE_TORCH_DEVICE" in os.environ or not torch.cuda.is_available():
        return False
    os.environ["ACCELERATE_TORCH_DEVICE"] = f"cuda:{int(local_rank)}"
    return True
