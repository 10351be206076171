"""An unwritable output location or a full disk fails early, with a typed error naming the
path and the fix, and leaves no partial artifact."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cli_runner import SYNTHETIC
from _helpers import debris, run_python, tiny_predictor, unwritable
from safetensors import SafetensorError
from torch import nn

from ensemble import _io
from ensemble.cli import main
from ensemble.combiners import create_combiner, load_combiner
from ensemble.exceptions import OutputError
from ensemble.experts import training
from ensemble.experts.training import TrainingConfig, train_classifier
from ensemble.logits import LogitSet
from ensemble.pipeline import Pipeline


def _refuse(code: int) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return refuse


def _below_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "run"


def _read_only_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_io.tempfile, "mkstemp", _refuse(errno.EROFS))
    return tmp_path / "run"


def _full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_io.os, "fsync", _refuse(errno.ENOSPC))
    return tmp_path / "run"


def _unwritable_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return unwritable(tmp_path)


@pytest.mark.parametrize(("make", "said"), [
    (_unwritable_dir, "choose another output directory"),
    (_below_a_file, "a file stands where a folder is needed"),
    (_read_only_fs, "read-only"),
    (_full_disk, "no space is left"),
], ids=["unwritable-dir", "path-below-a-file", "read-only-file-system", "full-disk"])
def test_run_fails_before_fine_tuning(make: Callable[..., Path], said: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make(tmp_path, monkeypatch)
    started: list[str] = []
    monkeypatch.setattr(Pipeline, "_finetune", lambda self, result: started.append("finetune"))
    assert main(["run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q"]) == 6
    err = capsys.readouterr().err
    assert started == [], "nothing may be fine-tuned into a place that cannot take the result"
    assert str(run_dir) in err and said in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists() or not any(run_dir.iterdir())


@pytest.fixture(scope="module")
def predictor(tiny_text_checkpoint: Path) -> Any:
    return tiny_predictor(tiny_text_checkpoint)


def _savers(predictor: Any) -> dict[str, Callable[[Path], Any]]:
    logits = LogitSet({"image": np.zeros((2, 3)), "text": np.ones((2, 3))}, ["a", "b", "c"])
    return {
        "FusionPredictor.save": predictor.save,
        "Expert.save_pretrained": predictor.experts["image"].save_pretrained,
        "Combiner.save": predictor.combiner.save,
        "LogitSet.save": logits.save,
    }


SAVERS = ["FusionPredictor.save", "Expert.save_pretrained", "Combiner.save", "LogitSet.save"]


@pytest.mark.parametrize("saver", SAVERS)
def test_save_into_an_unwritable_place_names_it(saver: str, predictor: Any,
                                               tmp_path: Path) -> None:
    target = unwritable(tmp_path) / "artifact"
    with pytest.raises(OutputError, match=r"cannot write .*artifact") as info:
        _savers(predictor)[saver](target)
    assert "output directory" in str(info.value)
    assert not target.exists()


def _disk_fills_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor writer (numpy and torch safetensors) writes half a file, then the disk
    is full; the Rust writer reports it as ``SafetensorError('... (os error 28)')``."""
    def half_then_full(*args: Any, **kwargs: Any) -> None:
        path = next(a for a in args if isinstance(a, (str, os.PathLike)))
        Path(path).write_bytes(b"\0" * 100)
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(_io, "save_file", half_then_full)
    monkeypatch.setattr("ensemble.experts.timm_image.save_model", half_then_full)


@pytest.mark.parametrize("saver", SAVERS)
def test_full_disk_during_a_save_keeps_the_previous_version(
        saver: str, predictor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "artifact"
    save = _savers(predictor)[saver]
    save(target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    _disk_fills_up(monkeypatch)
    with pytest.raises(OutputError, match=f"cannot write {target}: no space is left .* free"):
        save(target)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before, "the previous complete version is untouched"
    assert debris(tmp_path) == []


def test_full_disk_at_an_epoch_checkpoint_keeps_the_previous_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"x": torch.randn(4), "label": i % 2} for i in range(8)]

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([r["x"] for r in batch]),
                "labels": torch.tensor([r["label"] for r in batch])}

    real_save = torch.save

    def full_after_the_first(*args: Any, **kwargs: Any) -> None:
        if list(tmp_path.glob("checkpoint/optimizer.pt")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(*args, **kwargs)

    monkeypatch.setattr(training.torch, "save", full_after_the_first)
    with pytest.raises(OutputError, match="checkpoint: no space is left"):
        train_classifier(
            nn.Linear(4, 2), lambda model, batch: model(batch["x"]), rows,
            collate_train=collate, collate_eval=collate, train_labels=[r["label"] for r in rows],
            n_classes=2, config=TrainingConfig(epochs=2, batch_size=4, progress=False,
                                               output_dir=str(tmp_path), resume=True))
    assert training._Checkpoint(tmp_path).load()[3]["epoch"] == 0
    assert debris(tmp_path) == []


def test_real_file_size_limit_is_reported_as_an_output_error(tmp_path: Path) -> None:
    """No mock: the kernel refuses the write (RLIMIT_FSIZE) inside safetensors' Rust writer."""
    code = (
        "import resource, signal, sys, numpy as np\n"
        "from ensemble.exceptions import OutputError\n"
        "from ensemble.logits import LogitSet\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))\n"
        "big = LogitSet({'image': np.zeros((10_000, 3))}, ['a', 'b', 'c'])\n"
        "try:\n"
        "    big.save(sys.argv[1])\n"
        "except OutputError as err:\n"
        "    print(err)\n"
    )
    target = tmp_path / "logits"
    result = run_python(code, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"cannot write {target}: a file is larger than" in result.stdout
    assert "ulimit" in result.stdout and not target.exists() and debris(tmp_path) == []


def test_other_errors_are_not_disguised(tmp_path: Path) -> None:
    combiner = create_combiner("voting")
    with pytest.raises(Exception) as info:  # an unfitted combiner: not a disk problem
        combiner.save(tmp_path / "voting")
    assert not isinstance(info.value, OutputError)
    fitted = create_combiner("voting").fit({"a": np.eye(3), "b": np.eye(3)}, [0, 1, 2])
    fitted.save(tmp_path / "voting")
    assert load_combiner(tmp_path / "voting").classes_.tolist() == [0, 1, 2]
