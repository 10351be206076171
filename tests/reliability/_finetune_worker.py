"""Fine-tunes a tiny image expert (with augmentation) in a process of its own.

Usage: python _finetune_worker.py OUT MODE
  killed   train without checkpoints and write OUT/reference/{expert,result.json}; then
           train again with per-epoch checkpoints in OUT/work and SIGKILL this process in
           the middle of epoch 2 (one process for both saves a second start-up)
  resumed  train with resume=True from OUT/work; write OUT/resumed/{expert,result.json}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from _tiny_data import CLASSES, make_dataset
from torch.optim.optimizer import register_optimizer_step_post_hook

from ensemble.experts import ImageExpert
from ensemble.experts.training import TrainingConfig

N_TRAIN, BATCH, EPOCHS = 24, 4, 3
#: Optimizer steps before the kill: all of epoch 1 and two steps into epoch 2.
KILL_AFTER = math.ceil(N_TRAIN / BATCH) + 2


def _kill_mid_epoch() -> None:
    steps = [0]

    def count(optimizer: Any, args: Any, kwargs: Any) -> None:
        steps[0] += 1
        if steps[0] == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)

    register_optimizer_step_post_hook(count)


def fit(out: Path, name: str, *, checkpoints: bool, kill: bool = False) -> None:
    """Fine-tune with the fixed seed; write ``out/name/{expert,result.json}``."""
    train = make_dataset(N_TRAIN, seed=1)
    validation = make_dataset(12, seed=2, prefix="val")
    config = TrainingConfig(epochs=EPOCHS, batch_size=BATCH, learning_rate=0.01, progress=False,
                            seed=3)
    if checkpoints:
        config = config.updated(output_dir=str(out / "work"), resume=True)
    if kill:
        _kill_mid_epoch()
    expert = ImageExpert("test_resnet", CLASSES, pretrained=False, image_size=32, augment=True)
    expert.fit(train, validation, config=config)
    target = out / name
    expert.save_pretrained(target / "expert")
    history = [{k: v for k, v in dataclasses.asdict(r).items()
                if k not in ("seconds", "samples_per_second")} for r in expert.history_]
    logits = expert.predict_logits(validation, progress=False)
    (target / "result.json").write_text(json.dumps({
        "history": history, "best_epoch": expert.best_epoch_,
        "fingerprint": expert.fingerprint(), "logits": logits.tolist()}))


def main(out: Path, mode: str) -> None:
    torch.use_deterministic_algorithms(True)
    if mode == "killed":
        fit(out, "reference", checkpoints=False)
        fit(out, "killed", checkpoints=True, kill=True)
    else:
        fit(out, "resumed", checkpoints=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
