"""Run by ``torchrun --nproc_per_node 2`` from test_distributed.py: fit and predict tiny experts.

Usage: python _distributed_worker.py OUTPUT_DIR TEXT_CHECKPOINT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from accelerate import PartialState

from ensemble.data import class_names, make_synthetic
from ensemble.experts import ImageExpert, TextExpert


def main(output: Path, text_checkpoint: str) -> None:
    ds = make_synthetic(n_train=40, n_validation=23, n_test=17)
    names = class_names(ds)
    experts = {
        "image": ImageExpert("test_resnet", names, pretrained=False, image_size=32),
        "text": TextExpert(text_checkpoint, names),
    }
    report: dict[str, object] = {}
    for modality, expert in experts.items():
        expert.fit(ds["train"], ds["validation"], epochs=1, batch_size=8, eval_batch_size=5,
                   progress=False)
        logits = expert.predict_logits(ds["test"], batch_size=5, progress=False)
        # The loop set up the process group; a user's own PartialState() now joins it.
        state = PartialState()
        report["num_processes"] = state.num_processes
        report[modality] = {
            "eval_examples": [r.eval_examples for r in expert.history_],
            "fingerprint": expert.fingerprint(),
            "logits_shape": list(logits.shape),
        }
        if state.is_main_process:
            expert.save_pretrained(output / f"{modality}-expert")
            np.save(output / f"{modality}-logits.npy", logits)
        state.wait_for_everyone()
    (output / f"rank{state.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
