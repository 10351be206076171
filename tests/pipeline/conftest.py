"""One run of ``recipes/synthetic.yaml`` through the CLI, shared by the pipeline tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = REPO / "recipes" / "synthetic.yaml"
#: Fewer bootstrap resamples keep the report fast; everything else is the recipe as shipped.
FAST = ["--set", "evaluation.bootstrap=50"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
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


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of ``ensemble run recipes/synthetic.yaml`` (done once)."""
    run_dir = tmp_path_factory.mktemp("runs") / "synthetic"
    run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q", *FAST)
    return run_dir


@pytest.fixture(scope="session")
def synthetic_data():
    from ensemble.data import make_synthetic

    return make_synthetic(n_train=96, n_validation=64, n_test=64, noise=0.1)
