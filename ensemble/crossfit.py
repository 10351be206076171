"""Cross-fitting: K fold experts per modality, out-of-fold logits for the combiners.

With a plain split the combiners learn from the validation split only and the experts
never see it. Cross-fitting pools ``train`` + ``validation``, splits the pool into ``K``
stratified folds and fine-tunes one copy of the expert per fold on the other ``K - 1``.
Every pooled example is then scored by the one copy that did not train on it: those
*out-of-fold* logits are held-out data for the combiners, ``K`` times more of it than the
validation split alone. The ``K`` copies together form a :class:`BaggedExpert` that scores
the test split and goes into the bundle.

Each fold is saved as soon as it is trained (``work_dir/fold-<i>/``), so a killed run
resumes at the first unfinished fold (and inside it, at its last finished epoch).

Example:
    >>> result = cross_fit(lambda: TextExpert(path, names), pool, folds=3,  # doctest: +SKIP
    ...                    config=TrainingConfig(epochs=6), work_dir="work/text")
    >>> result.expert, result.oof.n_rows  # doctest: +SKIP
    (BaggedExpert(3 x TextExpert(...)), 1524)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_directory, read_json, read_verified_tensors, write_json, write_tensors
from .exceptions import ArtifactError, ConfigError, DataError
from .experts import BaggedExpert, Expert, load_expert
from .fingerprints import dataset_fingerprint
from .launch import PARALLEL_MODES, alone, processes
from .logits import LogitSet, Provenance

__all__ = ["CrossFitResult", "cross_fit", "fold_indices", "pool_splits"]

_EXPERT = "expert"
_SCORES = "held_out.safetensors"
_DONE = "fold.json"


@dataclass
class CrossFitResult:
    """The bagged expert and its out-of-fold :class:`LogitSet` over the pooled rows."""

    expert: BaggedExpert
    oof: LogitSet


def pool_splits(dataset: Any, splits: Sequence[str]) -> Any:
    """The named splits of a ``DatasetDict`` concatenated, in order, as one ``Dataset``."""
    from datasets import concatenate_datasets

    missing = [s for s in splits if s not in dataset]
    if missing:
        raise DataError(f"cannot pool splits {missing!r}: the dataset has {sorted(dataset)!r}.")
    return concatenate_datasets([dataset[s] for s in splits])


def fold_indices(labels: Sequence[int] | np.ndarray, folds: int,
                 seed: int = 0) -> list[np.ndarray]:
    """Held-out row indices of each of ``folds`` stratified, shuffled folds.

    Raises :class:`DataError` when a class has fewer rows than ``folds`` (a fold would
    have no example of it to hold out).
    """
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}.")
    y = np.asarray(labels)
    values, counts = np.unique(y, return_counts=True)
    if counts.min() < folds:
        rare = values[counts < folds].tolist()
        raise DataError(
            f"class(es) {rare!r} have fewer than {folds} examples; use fewer folds "
            f"(at most {int(counts.min())}) or more data."
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held_out for _, held_out in splitter.split(np.zeros(len(y)), y)]


def cross_fit(
    make_expert: Callable[[], Expert],
    pool: Any,
    *,
    folds: int,
    config: Any = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    label_column: str = "label",
    id_column: str = "id",
    batch_size: int = 64,
    features: bool = True,
    trained_on: Sequence[str] = (),
    modality: str | None = None,
    log: Callable[[str], None] | None = None,
    name: str = "",
    parallel: str = "data",
) -> CrossFitResult:
    """Fine-tune one expert per fold of ``pool`` and collect out-of-fold logits.

    ``make_expert()`` builds a fresh pretrained expert (called once per fold). Each fold
    trains with ``config`` for its full epoch count (no early stopping on the held-out
    fold: those rows must stay unseen). ``trained_on`` adds dataset fingerprints the bagged
    expert should count as seen (e.g. the original train and validation splits), so the
    leakage guard flags its in-sample logits there. ``work_dir`` keeps finished folds and
    training checkpoints so an interrupted call resumes.

    Under ``torchrun`` / ``accelerate launch`` every process calls it, and ``parallel``
    says how they share the work (one process: both are the sequential run):

    * ``"data"``: the folds one after another, each fine-tuned data-parallel on all
      processes; the main process writes the fold artifacts.
    * ``"folds"``: each process fine-tunes whole folds on its own (fold ``i`` on process
      ``i % N``) and writes them to ``work_dir`` (required), then every process reads all
      of them: the same experts and logits as the sequential run, bit for bit.
    """
    if parallel not in PARALLEL_MODES:
        raise ConfigError(f"parallel must be one of {list(PARALLEL_MODES)!r}, got "
                          f"{parallel!r}.")
    group = processes(via="store" if parallel == "folds" else "group")
    by_folds = parallel == "folds" and group.count > 1
    if by_folds and work_dir is None:
        raise ConfigError("fold-parallel cross-fitting hands the folds between processes "
                          "through work_dir; give a work_dir on a file system all of them "
                          "see.")
    labels = _labels(pool, label_column)
    held_out_rows = fold_indices(labels, folds, seed)
    work = Path(work_dir) if work_dir is not None else None

    def fold(index: int, *, write: bool) -> tuple[Expert, np.ndarray, np.ndarray | None]:
        fold_dir = work / f"fold-{index}" if work is not None else None
        held_out = held_out_rows[index]
        done = _load_fold(fold_dir, held_out) if fold_dir is not None else None
        if done is None:
            if log is not None:
                log(f"fit {name or 'expert'}: fold {index + 1}/{folds}")
            done = _fit_fold(make_expert, pool, held_out, config, fold_dir,
                             batch_size=batch_size, features=features, write=write)
        return done

    if by_folds:
        assert work is not None
        for index in group.mine(range(folds)):
            with alone():
                fold(index, write=True)
        group.wait()
        results = [_load_fold(work / f"fold-{i}", held_out)
                   for i, held_out in enumerate(held_out_rows)]
        group.wait()  # every process has read the folds before any moves on (and cleans up)
        if any(done is None for done in results):
            raise ArtifactError(f"a fold in {work} was not written by the process that "
                                "trained it; run again to train it.")
    else:
        results = []
        for index in range(folds):
            results.append(fold(index, write=group.is_main))
            group.wait()
    members = [done[0] for done in results if done is not None]
    scores = [(held_out, done[1], done[2])
              for held_out, done in zip(held_out_rows, results, strict=True) if done is not None]
    pool_fingerprint = dataset_fingerprint(pool)
    bagged = BaggedExpert(members, trained_on=[*trained_on, pool_fingerprint])
    oof = _out_of_fold_set(bagged, pool, scores, modality or bagged.modality,
                           id_column=id_column)
    return CrossFitResult(bagged, oof)


def _labels(pool: Any, label_column: str) -> np.ndarray:
    if label_column not in getattr(pool, "column_names", ()):
        raise DataError(f"the pooled data has no {label_column!r} column to stratify folds by.")
    from .labels import LabelSpace

    return LabelSpace.from_dataset(pool, label_column).encode_column(pool, label_column)


def _fit_fold(make_expert: Callable[[], Expert], pool: Any, held_out: np.ndarray,
              config: Any, fold_dir: Path | None, *, batch_size: int, features: bool,
              write: bool) -> tuple[Expert, np.ndarray, np.ndarray | None]:
    train_rows = np.setdiff1d(np.arange(len(pool)), held_out)
    expert = make_expert()
    fold_config = expert.fold_config(config, fold_dir / "training" if fold_dir else None)
    expert.fit(pool.select(train_rows), None, config=fold_config)
    output = expert.predict_logits(pool.select(held_out), batch_size=batch_size,
                                   return_features=features,
                                   progress=bool(getattr(config, "progress", True)))
    logits, embedded = output if features else (output, None)
    if fold_dir is not None and write:
        with atomic_directory(fold_dir / "done") as tmp:
            expert.save_pretrained(tmp / _EXPERT)
            tensors = {"held_out": held_out.astype(np.int64), "logits": logits}
            if embedded is not None:
                tensors["features"] = embedded
            digest = write_tensors(tmp / _SCORES, tensors)
            write_json(tmp / _DONE, {"rows": len(held_out), "sha256": digest})
        shutil.rmtree(fold_dir / "training", ignore_errors=True)
    return expert, logits, embedded


def _load_fold(fold_dir: Path, held_out: np.ndarray
               ) -> tuple[Expert, np.ndarray, np.ndarray | None] | None:
    """A fold finished by an earlier call, or ``None`` (not finished, or other folds)."""
    done = fold_dir / "done"
    if not (done / _DONE).is_file():
        return None
    record = read_json(done / _DONE)
    tensors = read_verified_tensors(done / _SCORES, record.get("sha256"),
                                    remedy=f"delete {fold_dir} to train this fold again.")
    if not np.array_equal(tensors["held_out"], held_out):
        return None  # written for another split of the pool: train this fold again
    return load_expert(done / _EXPERT), tensors["logits"], tensors.get("features")


def _out_of_fold_set(bagged: BaggedExpert, pool: Any,
                     scores: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                     modality: str, *, id_column: str) -> LogitSet:
    logits = np.zeros((len(pool), bagged.num_classes), dtype=np.float32)
    for held_out, fold_logits, _ in scores:
        logits[held_out] = fold_logits
    features = None
    fold_features = [f for _, _, f in scores if f is not None]
    if len(fold_features) == len(scores):
        embedded = np.zeros((len(pool), fold_features[0].shape[1]), dtype=np.float32)
        for (held_out, _, _), values in zip(scores, fold_features, strict=True):
            embedded[held_out] = values
        features = {modality: embedded}
    ids = pool[id_column] if id_column in pool.column_names else None
    provenance = Provenance(
        expert=f"{type(bagged.members[0]).__name__} (out-of-fold)",
        checkpoint=bagged.checkpoint,
        fingerprint=bagged.fingerprint(),
        split=f"cross-fitted ({len(scores)} folds)",
        dataset_fingerprint=dataset_fingerprint(pool),
        # Each row was scored by the member that did not train on it: held out by
        # construction, so the members' own fold fingerprints are what they saw.
        trained_on=tuple(f for m in bagged.members for f in m.trained_on_),
    )
    return LogitSet(
        {modality: logits}, list(bagged.class_names), ids=ids,
        mask=np.asarray(bagged.present_rows(pool), dtype=bool)[:, None],
        features=features,
        provenance={modality: provenance},
    )
