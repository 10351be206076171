"""One run of ``recipes/synthetic.yaml`` through the CLI, shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_runner import FAST, REPO, SYNTHETIC, cli_env, run_cli

__all__ = ["FAST", "REPO", "SYNTHETIC", "cli_env", "run_cli"]


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
