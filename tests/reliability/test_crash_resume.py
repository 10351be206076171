"""Crashes: SIGKILL in the middle of a fine-tuning epoch and in the middle of a save.

Related tests elsewhere: a fine-tune interrupted by an exception resumes bit-identically
(tests/experts/test_training.py), ``ensemble run`` killed between stages resumes
(tests/pipeline/test_run.py::test_killed_run_resumes_and_gives_the_same_result), and a kill
while ``ensemble run`` saves an expert (test_runs.py here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers import HERE, assert_killed, debris, run_python

from ensemble.exceptions import ArtifactError
from ensemble.logits import LogitSet

FINETUNE = HERE / "_finetune_worker.py"
KILL = HERE / "_kill_worker.py"


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    assert_killed(run_python(FINETUNE, str(tmp_path), "killed"))  # after a reference run
    assert (tmp_path / "reference" / "result.json").is_file()
    state = json.loads((tmp_path / "work" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 0, "killed in epoch 2: only epoch 1 is checkpointed"
    assert not (tmp_path / "killed").exists()

    resumed = run_python(FINETUNE, str(tmp_path), "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "reference" / "result.json").read_text())
    got = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert got["history"] == expected["history"]  # every epoch's losses and eval metrics
    assert got == expected
    weights = "expert/model.safetensors"
    assert (tmp_path / "resumed" / weights).read_bytes() == (
        tmp_path / "reference" / weights).read_bytes()


def _values(directory: Path) -> float:
    """Which version of ``_kill_worker.logits_version`` is saved in ``directory``."""
    logits = LogitSet.load(directory)
    versions = {float(v) for v in np.unique(logits.logits["image"])}
    assert len(versions) == 1 and logits.ids[0].startswith(f"v{int(min(versions))}-")
    return versions.pop()


def _save(target: Path, version: int) -> None:
    from _kill_worker import logits_version

    logits_version(version).save(target)


@pytest.mark.parametrize(("where", "previous", "after_kill"), [
    ("ensemble._io:save_file", True, 1.0),
    ("ensemble._io:save_file", False, None),
    ("after-swap", True, 2.0),
    ("between-moves", True, None),
], ids=["mid-file-over-a-previous-version", "mid-file-first-save",
        "after-swap-before-cleanup", "between-moves-without-atomic-exchange"])
def test_kill_during_a_save_leaves_a_complete_version_or_none(
        tmp_path: Path, where: str, previous: bool, after_kill: float | None) -> None:
    target = tmp_path / "logits"
    if previous:
        _save(target, 1)
    assert_killed(run_python(KILL, where, ".logits.", "save-logits", str(target), "2"))
    assert debris(tmp_path), "the kill left the writer's temporary files behind"
    if after_kill is None:
        assert not target.exists()
        with pytest.raises(ArtifactError):
            LogitSet.load(target)
    else:
        assert _values(target) == after_kill  # complete, never half-written

    _save(target, 3)  # the next save works and clears what the killed writer left
    assert _values(target) == 3.0
    assert debris(tmp_path) == []
