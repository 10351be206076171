"""The shared fine-tuning loop, on a tiny linear model over random tensors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ensemble.exceptions import ConfigError
from ensemble.experts import training
from ensemble.experts.training import TrainingConfig, train_classifier

N_FEATURES, N_CLASSES = 8, 3


def _rows(n: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=generator)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return [{"x": x[i], "label": int(labels[i])} for i in range(n)]


TRAIN = _rows(20, seed=1)
EVAL = _rows(10, seed=2)


def _collate(rows: list[dict]) -> dict:
    return {"x": torch.stack([r["x"] for r in rows]),
            "labels": torch.tensor([r["label"] for r in rows])}


def _forward(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(batch["x"])


def _model() -> nn.Module:
    torch.manual_seed(0)
    # Dropout makes each step depend on the torch RNG, which resuming must reproduce.
    return nn.Sequential(nn.Dropout(0.3), nn.Linear(N_FEATURES, N_CLASSES))


def _fit(model: nn.Module | None = None, *, eval_data=EVAL, train_data=TRAIN,
         **changes) -> tuple[nn.Module, training.TrainingResult]:
    model = model or _model()
    base = TrainingConfig(epochs=2, batch_size=4, eval_batch_size=4, learning_rate=0.05,
                          progress=False)
    result = train_classifier(
        model, _forward, train_data, collate_train=_collate, collate_eval=_collate,
        train_labels=[r["label"] for r in train_data], n_classes=N_CLASSES,
        eval_data=eval_data, config=base.updated(**changes),
    )
    return model, result


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0}, {"epochs": 1.5}, {"epochs": True}, {"batch_size": -1},
        {"eval_batch_size": 0}, {"gradient_accumulation_steps": 0}, {"learning_rate": 0.0},
        {"learning_rate": float("nan")}, {"warmup_ratio": 1.0}, {"warmup_ratio": -0.1},
        {"label_smoothing": 1.0}, {"scheduler": "step"}, {"mixed_precision": "fp8"},
        {"metric": "auc"}, {"class_weight": "inverse"}, {"early_stopping_patience": 0},
        {"resume": True},
    ],
    ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()),
)
def test_invalid_field_raises_config_error_naming_it(bad: dict) -> None:
    (name,) = bad
    with pytest.raises(ConfigError, match=name if name != "resume" else "output_dir"):
        TrainingConfig(**bad)
    with pytest.raises(ConfigError):
        TrainingConfig().updated(**bad)


def test_updated_rejects_unknown_names_and_leaves_the_original() -> None:
    config = TrainingConfig()
    with pytest.raises(ConfigError, match="unknown"):
        config.updated(unknown=1)
    assert config.updated(epochs=5).epochs == 5
    assert config.epochs == 10


# -- the loop -------------------------------------------------------------------------------


def test_training_learns_and_records_each_eval_example_once() -> None:
    model, result = _fit(epochs=3)
    assert [r.epoch for r in result.history] == [0, 1, 2]
    assert all(r.eval_examples == len(EVAL) for r in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert 0 <= result.best_epoch < 3
    assert not model.training, "the model is returned in eval mode"


def test_same_seed_gives_identical_weights() -> None:
    first, _ = _fit()
    second, _ = _fit()
    other, _ = _fit(seed=1)
    assert _same_weights(first, second)
    assert not _same_weights(first, other)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("killed_after", [1, 2])
def test_resumed_run_matches_an_uninterrupted_run_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_after: int
) -> None:
    settings = {"epochs": 4, "scheduler": "cosine", "warmup_ratio": 0.25, "output_dir": None}
    reference, reference_result = _fit(**settings)

    output_dir = str(tmp_path / "run")
    real_epoch = training._train_epoch

    def killed(*args, **kwargs):
        if args[8] == killed_after:  # the epoch argument
            raise _Killed
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", killed)
    with pytest.raises(_Killed):
        _fit(**{**settings, "output_dir": output_dir})
    monkeypatch.setattr(training, "_train_epoch", real_epoch)

    resumed, result = _fit(**{**settings, "output_dir": output_dir, "resume": True})
    assert _same_weights(resumed, reference)
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    assert [r.train_loss for r in result.history] == [
        r.train_loss for r in reference_result.history
    ]
    assert result.best_epoch == reference_result.best_epoch


def test_resume_with_different_settings_is_refused(tmp_path: Path) -> None:
    _fit(epochs=1, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="different settings"):
        _fit(epochs=2, output_dir=str(tmp_path), resume=True, learning_rate=0.01)


def test_resume_with_a_different_epoch_count_is_refused(tmp_path: Path) -> None:
    # The schedule is sized from epochs: continuing with another count would silently
    # follow a different learning-rate curve.
    _fit(epochs=1, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="different settings"):
        _fit(epochs=3, output_dir=str(tmp_path), resume=True)


def test_resume_after_the_last_epoch_trains_no_further(tmp_path: Path) -> None:
    done, _ = _fit(epochs=2, output_dir=str(tmp_path))
    again, result = _fit(epochs=2, output_dir=str(tmp_path), resume=True)
    assert _same_weights(done, again)
    assert len(result.history) == 2


def test_early_stopping_keeps_the_best_epochs_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.9, 0.9])
    snapshots: list[dict] = []

    def scripted(model, forward, loader, loss_fn, accelerator, record) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        record.eval_loss, record.eval_macro_f1 = 1.0, 0.5
        record.eval_accuracy = next(scores)
        record.eval_examples = len(EVAL)

    monkeypatch.setattr(training, "_evaluate", scripted)
    model, result = _fit(epochs=6, early_stopping_patience=2)
    assert result.stopped_early
    assert len(result.history) == 4, "epochs 2 and 3 did not improve on epoch 1"
    assert result.best_epoch == 1
    assert result.best_score == pytest.approx(0.8)
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)
    assert not all(torch.equal(state[k], snapshots[3][k]) for k in state)


def test_balanced_class_weight_changes_the_loss_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    skewed = [{**row, "label": 0 if i < 15 else i % 2 + 1} for i, row in enumerate(TRAIN)]
    weights: list[torch.Tensor | None] = []
    real_loss = nn.CrossEntropyLoss

    class SpyLoss(real_loss):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            weights.append(self.weight)

    monkeypatch.setattr(nn, "CrossEntropyLoss", SpyLoss)
    plain, _ = _fit(train_data=skewed, epochs=1)
    balanced, _ = _fit(train_data=skewed, epochs=1, class_weight="balanced")
    assert weights[0] is None
    # 15 / 2 / 3 examples of classes 0 / 1 / 2: weight = n / (C * count).
    torch.testing.assert_close(weights[1], torch.tensor([20 / 45, 20 / 6, 20 / 9]))
    assert not _same_weights(plain, balanced)


def test_gradient_accumulation_updates_once_per_group_of_batches() -> None:
    steps: list[int] = []
    hook = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: steps.append(1))
    try:
        _, result = _fit(epochs=2, gradient_accumulation_steps=2)
    finally:
        hook.remove()
    # 20 rows / batch 4 = 5 batches per epoch -> updates after batches 2, 4 and 5.
    assert len(steps) == 2 * 3
    assert len(result.history) == 2
    assert all(r.eval_examples == len(EVAL) for r in result.history)


def test_without_eval_data_the_lowest_train_loss_epoch_is_kept() -> None:
    _, result = _fit(eval_data=None, epochs=3)
    assert all(r.eval_accuracy is None and r.eval_examples == 0 for r in result.history)
    losses = [r.train_loss for r in result.history]
    assert result.best_epoch == losses.index(min(losses))


def test_signature_ignores_only_run_control_fields() -> None:
    config = TrainingConfig()
    signature = config.signature()
    # epochs sizes the learning-rate schedule, so a resumed run must keep it.
    assert {"learning_rate", "seed", "epochs"} <= set(signature)
    assert "output_dir" not in signature and "resume" not in signature
    assert set(signature) < {f.name for f in dataclasses.fields(config)}


def test_runs_with_different_mixed_precision_follow_each_other() -> None:
    # accelerate keeps one process-wide state; the loop must let a bf16 run follow a
    # full-precision one (e.g. an image then a text expert) and vice versa.
    _, bf16 = _fit(mixed_precision="bf16")
    _, full = _fit(mixed_precision="no")
    _, again = _fit(mixed_precision="bf16")
    assert len(bf16.history) == len(full.history) == len(again.history) == 2
    assert [r.train_loss for r in bf16.history] == [r.train_loss for r in again.history]


def test_head_learning_rate_applies_only_to_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[tuple[int, float, float]]] = []
    make = training._adamw

    def spy(groups, learning_rate):
        seen.append([(len(g["params"]), g["lr"], g["weight_decay"]) for g in groups])
        return make(groups, learning_rate)

    monkeypatch.setattr(training, "_adamw", spy)
    model = nn.Sequential(nn.Linear(N_FEATURES, 6), nn.ReLU(), nn.Linear(6, N_CLASSES))
    train_classifier(
        model, _forward, TRAIN, collate_train=_collate, collate_eval=_collate,
        train_labels=[r["label"] for r in TRAIN], n_classes=N_CLASSES, head=model[2],
        config=TrainingConfig(epochs=1, batch_size=4, learning_rate=0.01,
                              head_learning_rate=0.1, weight_decay=0.05, progress=False),
    )
    # (parameters, lr, weight decay): body bias, body weight, head bias, head weight.
    assert sorted(seen[0]) == sorted([(1, 0.01, 0.0), (1, 0.01, 0.05),
                                      (1, 0.1, 0.0), (1, 0.1, 0.05)])
    # Without a head every parameter shares the one learning rate.
    model, _ = _fit(nn.Sequential(nn.Linear(N_FEATURES, N_CLASSES)))
    assert {lr for _, lr, _ in seen[-1]} == {0.05}
    # Without head_learning_rate the fresh head learns HEAD_LR_MULTIPLIER times faster.
    model = nn.Sequential(nn.Linear(N_FEATURES, 6), nn.ReLU(), nn.Linear(6, N_CLASSES))
    train_classifier(
        model, _forward, TRAIN, collate_train=_collate, collate_eval=_collate,
        train_labels=[r["label"] for r in TRAIN], n_classes=N_CLASSES, head=model[2],
        config=TrainingConfig(epochs=1, batch_size=4, learning_rate=0.01, progress=False),
    )
    assert {lr for _, lr, _ in seen[-1]} == {0.01, 0.01 * training.HEAD_LR_MULTIPLIER}


def test_time_limit_stops_between_epochs_and_shortens_the_schedule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 10))  # every perf_counter call: 10 s later
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    seen: list[training._Schedule] = []
    original = training._Schedule
    monkeypatch.setattr(training, "_Schedule", lambda *a: seen.append(original(*a)) or seen[-1])
    _, result = _fit(epochs=50, time_limit=100.0, early_stopping_patience=None)
    assert result.stopped_by_time and 1 < len(result.history) < 50
    assert seen[0].total < 50 * 5  # the cosine horizon was cut to the epochs that fit


@pytest.mark.parametrize("value", [0, -3.0, "soon", True])
def test_invalid_time_limit_is_named(value) -> None:
    with pytest.raises(ConfigError, match="time_limit"):
        TrainingConfig(time_limit=value)


@pytest.mark.parametrize("value", [0.0, -1.0, "fast"])
def test_invalid_head_learning_rate_is_named(value) -> None:
    with pytest.raises(ConfigError, match="head_learning_rate"):
        TrainingConfig(head_learning_rate=value)


def test_a_lone_last_example_is_skipped_so_batch_norm_can_train() -> None:
    model = nn.Sequential(nn.Linear(N_FEATURES, 6), nn.BatchNorm1d(6), nn.Linear(6, N_CLASSES))
    rows = _rows(9, seed=3)  # batches of 4, 4 and a lone 1
    _, result = _fit(model, train_data=rows, eval_data=None, batch_size=4)
    assert len(result.history) == 2 and all(r.train_loss > 0 for r in result.history)
