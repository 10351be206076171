"""The fine-tuning loop and logit export under two CPU processes (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cli_runner import free_port

from ensemble.data import make_synthetic
from ensemble.experts import load_expert

WORKER = Path(__file__).with_name("_distributed_worker.py")


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_fit_and_predict_match_one_process(tmp_path: Path,
                                                      tiny_text_checkpoint: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(WORKER), str(tmp_path), str(tiny_text_checkpoint),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["num_processes"] for r in reports] == [2, 2]
    test = make_synthetic(n_train=40, n_validation=23, n_test=17)["test"]
    for modality in ("image", "text"):
        rank0, rank1 = reports[0][modality], reports[1][modality]
        # Every validation example counted exactly once, on both ranks.
        assert rank0["eval_examples"] == [23] and rank1["eval_examples"] == [23]
        # DDP kept the replicas identical.
        assert rank0["fingerprint"] == rank1["fingerprint"]
        # Gathered logits: every test row once, in dataset order, as one process computes them.
        assert rank0["logits_shape"] == [17, 4]
        two_process = np.load(tmp_path / f"{modality}-logits.npy")
        expert = load_expert(tmp_path / f"{modality}-expert")
        assert expert.fingerprint() == rank0["fingerprint"]
        one_process = expert.predict_logits(test, batch_size=5, progress=False)
        np.testing.assert_allclose(two_process, one_process, rtol=1e-5, atol=1e-5)
