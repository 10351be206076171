"""Running the ``ensemble`` command in a fresh process, shared by the pipeline and
reliability tests (a plain module: a second ``conftest`` module name would clash)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "recipes" / "synthetic.yaml"
#: Fewer bootstrap resamples keep the report fast; everything else is the recipe as shipped.
FAST = ["--set", "evaluation.bootstrap=50"]


def cli_env() -> dict[str, str]:
    """Offline, quiet, and one CPU thread: results compared across processes are only
    bit-identical at the same thread count (oneDNN splits convolutions by thread)."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",
               OMP_WAIT_POLICY="PASSIVE")
    return env


def run_cli(*args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m ensemble ARGS`` in a fresh process."""
    result = subprocess.run([sys.executable, "-m", "ensemble", *args], cwd=cwd or REPO,
                            env=cli_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"ensemble {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    """A TCP port nothing listens on now (for a torchrun rendezvous)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(*args: str, processes: int = 2) -> list[str]:
    """The command line of ``torchrun --nproc_per_node N -m ensemble ARGS`` on this host."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            "-m", "ensemble", *args]


def run_torchrun(*args: str, processes: int = 2, timeout: float = 600
                 ) -> subprocess.CompletedProcess[str]:
    """``ensemble ARGS`` on ``processes`` CPU processes under torchrun; must succeed."""
    result = subprocess.run(torchrun(*args, processes=processes), cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"torchrun ensemble {' '.join(args)} exited {result.returncode}:"
                             f"\n{result.stdout}\n{result.stderr[-6000:]}")
    return result
