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
