"""The logit store: per-expert logits on one split, with their provenance.

A :class:`LogitSet` is what every combiner is fitted on. It holds, for ``N`` examples and
``C`` classes, one float32 ``[N, C]`` logit matrix per named expert (expert_name), optional
pre-logit features ``[N, D]`` per expert, a boolean presence mask ``[N, M]``, the example
ids, the ordered class names and, per expert, where the numbers came from.

Example:
    >>> import numpy as np
    >>> ls = LogitSet({"image": np.zeros((2, 3)), "text": np.ones((2, 3))},
    ...               class_names=["a", "b", "c"], ids=["x", "y"])
    >>> ls.expert_names, ls.n_rows, ls.n_classes
    (('image', 'text'), 2, 3)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._io import (
    FORMAT_VERSION,
    atomic_directory,
    check_format_version,
    library_versions,
    read_json,
    read_verified_tensors,
    write_json,
    write_tensors,
)
from .exceptions import (
    AlignmentError,
    ArtifactError,
    ClassMismatchError,
    InvalidLogitsError,
    LeakageError,
    ModalityError,
)
from .fingerprints import dataset_fingerprint
from .labels import softmax

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["LogitCache", "LogitSet", "Provenance"]

_CONFIG = "config.json"
_TENSORS = "logits.safetensors"


@dataclass(frozen=True)
class Provenance:
    """Where one expert's logits came from.

    ``trained_on`` lists the dataset fingerprints the expert was fine-tuned on; when it
    contains ``dataset_fingerprint`` the logits are in-sample and must not train a combiner.
    """

    expert: str = ""
    checkpoint: str = ""
    fingerprint: str = ""
    split: str = ""
    dataset_fingerprint: str = ""
    trained_on: tuple[str, ...] = ()

    @property
    def in_sample(self) -> bool:
        """True when these logits were computed on data the expert was fine-tuned on."""
        return bool(self.dataset_fingerprint) and self.dataset_fingerprint in self.trained_on

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trained_on"] = list(self.trained_on)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        known["trained_on"] = tuple(known.get("trained_on", ()))
        return cls(**known)


class LogitSource(Protocol):
    """What :meth:`LogitSet.from_experts` needs of an expert.

    Optional: ``present_rows(dataset) -> bool [N]`` (else ``input_column``) gives the rows
    whose input is missing, ``checkpoint`` and ``trained_on_`` fill the provenance.
    """

    class_names: list[str]

    def predict_logits(self, dataset: Any, *, batch_size: int = ...,
                       return_features: bool = ...) -> Any: ...

    def fingerprint(self) -> str: ...


def _as_logits(name: str, values: Any, *, rows: int | None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise InvalidLogitsError(
            f"logits for {name!r} must be a 2-D array [N, C], got shape {array.shape}."
        )
    if rows is not None and array.shape[0] != rows:
        raise InvalidLogitsError(
            f"logits for {name!r} have {array.shape[0]} rows but other experts have {rows}; "
            "compute every expert's logits on the same examples (or align them by id first)."
        )
    return array


@dataclass(frozen=True, eq=False)
class LogitSet:
    """Named per-expert logits on one set of examples.

    Rows where an expert is absent (``mask`` false) may hold anything (NaN included);
    they are stored as zeros and every combiner ignores them. Present rows must be finite.
    """

    logits: Mapping[str, np.ndarray]
    class_names: Sequence[str]
    ids: Sequence[str] | np.ndarray | None = None
    mask: np.ndarray | Mapping[str, np.ndarray] | None = None
    features: Mapping[str, np.ndarray] | None = None
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    allow_in_sample: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.logits, Mapping) or not self.logits:
            raise InvalidLogitsError(
                "logits must be a non-empty mapping {expert_name: array [N, C]}, "
                f"got {type(self.logits).__name__}."
            )
        names = [str(c) for c in self.class_names]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ClassMismatchError(
                f"class_names must hold at least two distinct names, got {names!r}."
            )
        logits: dict[str, np.ndarray] = {}
        rows: int | None = None
        for expert_name, values in self.logits.items():
            if not isinstance(expert_name, str) or not expert_name:
                raise ModalityError(f"expert names must be non-empty strings, got {expert_name!r}.")
            array = _as_logits(expert_name, values, rows=rows)
            rows = array.shape[0]
            if array.shape[1] != len(names):
                raise ClassMismatchError(
                    f"logits for {expert_name!r} have {array.shape[1]} columns but there are "
                    f"{len(names)} class names; give the expert's own class list."
                )
            logits[expert_name] = array
        assert rows is not None
        expert_names = tuple(logits)
        mask = self._build_mask(expert_names, rows)
        for j, expert_name in enumerate(expert_names):
            array = logits[expert_name].copy()
            array[~mask[:, j]] = 0.0
            bad = ~np.isfinite(array).all(axis=1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                ident = self._raw_ids(rows)[row]
                raise InvalidLogitsError(
                    f"logits for {expert_name!r} hold NaN/inf in {int(bad.sum())} present row(s), "
                    f"first at example id {ident!r}; fix the expert, or mark the rows missing "
                    "in the mask."
                )
            array.setflags(write=False)
            logits[expert_name] = array
        features = self._build_features(expert_names, rows, mask)
        ids = self._raw_ids(rows)
        if len(set(ids.tolist())) != rows:
            values, counts = np.unique(ids, return_counts=True)
            raise AlignmentError(
                f"example ids must be unique; {values[counts > 1][:5].tolist()!r} repeat."
            )
        ids.setflags(write=False)
        mask.setflags(write=False)
        unknown = set(self.provenance) - set(expert_names)
        if unknown:
            raise ModalityError(f"provenance names unknown experts {sorted(unknown)!r}.")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "class_names", tuple(names))
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "provenance", dict(self.provenance))

    # -- construction helpers -------------------------------------------------------------

    def _raw_ids(self, rows: int) -> np.ndarray:
        if self.ids is None:
            return np.array([str(i) for i in range(rows)], dtype=object)
        ids = np.array([str(i) for i in self.ids], dtype=object)
        if ids.shape != (rows,):
            raise AlignmentError(f"got {ids.shape[0]} ids for {rows} rows of logits.")
        return ids

    def _build_mask(self, expert_names: tuple[str, ...], rows: int) -> np.ndarray:
        return _mask_array(self.mask, expert_names, rows)


    def _build_features(
        self, expert_names: tuple[str, ...], rows: int, mask: np.ndarray
    ) -> dict[str, np.ndarray]:
        features: dict[str, np.ndarray] = {}
        for expert_name, values in (self.features or {}).items():
            if expert_name not in expert_names:
                raise ModalityError(
                    f"features given for {expert_name!r}, which has no logits; "
                    f"known: {list(expert_names)!r}."
                )
            array = np.array(values, dtype=np.float32)
            if array.ndim != 2 or array.shape[0] != rows:
                raise InvalidLogitsError(
                    f"features for {expert_name!r} must be [N={rows}, D], got {array.shape}."
                )
            array[~mask[:, expert_names.index(expert_name)]] = 0.0
            if not np.isfinite(array).all():
                raise InvalidLogitsError(f"features for {expert_name!r} hold NaN/inf values.")
            array.setflags(write=False)
            features[expert_name] = array
        return features

    # -- basic properties -----------------------------------------------------------------

    @property
    def expert_names(self) -> tuple[str, ...]:
        """Expert names, in column order of :attr:`mask`."""
        return tuple(self.logits)

    @property
    def n_rows(self) -> int:
        return int(self.mask.shape[0])  # type: ignore[union-attr]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        present = {m: int(self.present(m).sum()) for m in self.expert_names}
        return (
            f"LogitSet(n_rows={self.n_rows}, classes={list(self.class_names)!r}, "
            f"present={present}, features={sorted(self.features or {})})"
        )

    def present(self, expert_name: str) -> np.ndarray:
        """Boolean ``[N]`` vector: rows where ``expert_name`` is available."""
        self._check_expert(expert_name)
        return self.mask[:, self.expert_names.index(expert_name)]  # type: ignore[index]

    def _check_expert(self, expert_name: str) -> None:
        if expert_name not in self.logits:
            raise ModalityError(
                f"no logits for expert {expert_name!r}; this LogitSet has "
                f"{list(self.expert_names)!r}."
            )

    def probabilities(self) -> dict[str, np.ndarray]:
        """Each expert's softmax probabilities ``[N, C]`` (float64); rows where the expert
        is absent get the uniform distribution."""
        out = {}
        for j, name in enumerate(self.expert_names):
            proba = softmax(np.asarray(self.logits[name], dtype=np.float64), axis=1)
            proba[~self.mask[:, j]] = 1.0 / self.n_classes
            out[name] = proba
        return out

    def stacked(self) -> np.ndarray:
        """All logits as one ``[N, M, C]`` float32 array (missing rows are zeros)."""
        return np.stack([self.logits[m] for m in self.expert_names], axis=1)

    # -- derived sets ---------------------------------------------------------------------

    def _derive(self, **changes: Any) -> LogitSet:
        return replace(self, **changes)

    def subset(self, rows: Sequence[int] | np.ndarray) -> LogitSet:
        """The rows at integer positions (or boolean mask) ``rows``, in that order."""
        index = np.asarray(rows)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        elif index.size == 0:
            index = index.astype(np.intp)  # [] is float64 to numpy, not an index
        return self._derive(
            logits={m: a[index] for m, a in self.logits.items()},
            ids=np.asarray(self.ids)[index],
            mask=np.asarray(self.mask)[index],
            features={m: a[index] for m, a in (self.features or {}).items()},
        )

    def select(self, expert_names: Iterable[str]) -> LogitSet:
        """Only the named experts, in the given order."""
        names = list(expert_names)
        for name in names:
            self._check_expert(name)
        columns = [self.expert_names.index(m) for m in names]
        return self._derive(
            logits={m: self.logits[m] for m in names},
            mask=np.asarray(self.mask)[:, columns],
            features={m: a for m, a in (self.features or {}).items() if m in names},
            provenance={m: p for m, p in self.provenance.items() if m in names},
        )

    def with_mask(self, mask: np.ndarray | Mapping[str, np.ndarray]) -> LogitSet:
        """A copy whose presence mask is ANDed with ``mask`` (e.g. to simulate missing data)."""
        new = _mask_array(mask, self.expert_names, self.n_rows)
        return self._derive(mask=np.asarray(self.mask) & new)

    def allow_leakage(self) -> LogitSet:
        """A copy that combiners accept even when some logits are in-sample."""
        return self._derive(allow_in_sample=True)

    def align(
        self,
        ids: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> LogitSet:
        """Reorder rows to ``ids`` and logit columns to ``class_names``.

        Rows are matched by example id, never by position; columns by class name, so two
        experts that list the same classes in a different order line up. Ids not present
        here raise :class:`AlignmentError`; a different class *set* raises
        :class:`ClassMismatchError`.
        """
        result: LogitSet = self
        if class_names is not None:
            result = result._align_classes([str(c) for c in class_names])
        if ids is not None:
            result = result._align_rows([str(i) for i in ids])
        return result

    def _align_classes(self, names: list[str]) -> LogitSet:
        if list(self.class_names) == names:
            return self
        if set(names) != set(self.class_names) or len(names) != len(self.class_names):
            missing = sorted(set(names) - set(self.class_names))
            extra = sorted(set(self.class_names) - set(names))
            raise ClassMismatchError(
                f"cannot align class lists: missing {missing!r}, unexpected {extra!r}; every "
                "expert and combiner must share one label space."
            )
        order = [list(self.class_names).index(n) for n in names]
        return self._derive(
            logits={m: a[:, order] for m, a in self.logits.items()}, class_names=names
        )

    def _align_rows(self, ids: list[str]) -> LogitSet:
        position = {ident: i for i, ident in enumerate(np.asarray(self.ids).tolist())}
        missing = [i for i in ids if i not in position]
        if missing:
            raise AlignmentError(
                f"{len(missing)} requested id(s) have no logits here, e.g. {missing[:5]!r}; "
                "compute the logits on the same examples."
            )
        return self.subset([position[i] for i in ids])

    def merge(self, other: LogitSet) -> LogitSet:
        """Join the experts of two sets over the same examples, aligned by id and class.

        Example:
            >>> a = LogitSet({"image": np.zeros((2, 2))}, ["x", "y"], ids=["1", "2"])
            >>> b = LogitSet({"text": np.ones((2, 2))}, ["y", "x"], ids=["2", "1"])
            >>> a.merge(b).expert_names
            ('image', 'text')
        """
        clash = set(self.expert_names) & set(other.expert_names)
        if clash:
            raise ModalityError(f"both sets hold experts {sorted(clash)!r}; rename one.")
        if set(np.asarray(self.ids).tolist()) != set(np.asarray(other.ids).tolist()):
            raise AlignmentError(
                "the two sets cover different example ids; compute both on the same split."
            )
        aligned = other.align(ids=list(np.asarray(self.ids)), class_names=self.class_names)
        return LogitSet(
            {**self.logits, **aligned.logits},
            self.class_names,
            ids=self.ids,
            mask=np.concatenate([np.asarray(self.mask), np.asarray(aligned.mask)], axis=1),
            features={**(self.features or {}), **(aligned.features or {})},
            provenance={**self.provenance, **aligned.provenance},
            allow_in_sample=self.allow_in_sample and other.allow_in_sample,
        )

    # -- leakage --------------------------------------------------------------------------

    def check_held_out(self) -> None:
        """Raise :class:`LeakageError` if any expert's logits are on its own training data."""
        if self.allow_in_sample:
            return
        leaked = [m for m, p in self.provenance.items() if p.in_sample]
        if leaked:
            splits = {m: self.provenance[m].split for m in leaked}
            raise LeakageError(
                f"experts {leaked!r} were fine-tuned on the data these logits come from "
                f"(split {splits!r}); a combiner fitted on them would trust over-confident "
                "experts. Use logits of a held-out split (e.g. 'validation'), or call "
                "`.allow_leakage()` if this is intended."
            )

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``logits.safetensors`` atomically into ``directory``."""
        directory = Path(directory)
        tensors: dict[str, np.ndarray] = {"mask": np.asarray(self.mask, dtype=np.uint8)}
        for expert_name, array in self.logits.items():
            tensors[f"logits.{expert_name}"] = array
        for expert_name, array in (self.features or {}).items():
            tensors[f"features.{expert_name}"] = array
        config = {
            "kind": "LogitSet",
            "format_version": FORMAT_VERSION,
            "experts": list(self.expert_names),
            "class_names": list(self.class_names),
            "ids": [str(i) for i in np.asarray(self.ids).tolist()],
            "features": sorted(self.features or {}),
            "provenance": {m: p.to_dict() for m, p in self.provenance.items()},
            "allow_in_sample": self.allow_in_sample,
            "versions": library_versions(),
        }
        with atomic_directory(directory) as tmp:
            config["tensors_sha256"] = write_tensors(tmp / _TENSORS, tensors)
            write_json(tmp / _CONFIG, config)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LogitSet:
        """Read a set written by :meth:`save`; never unpickles."""
        directory = Path(directory)
        config = read_json(directory / _CONFIG)
        if config.get("kind") != "LogitSet":
            raise ArtifactError(f"{directory} holds a {config.get('kind')!r}, not a LogitSet.")
        check_format_version(config, directory)
        tensors = read_verified_tensors(directory / _TENSORS, config.get("tensors_sha256"),
                                        remedy="Recompute the logits.")
        try:
            expert_names = [str(m) for m in config["experts"]]
            logits = {m: tensors[f"logits.{m}"] for m in expert_names}
            features = {m: tensors[f"features.{m}"] for m in config.get("features", [])}
            mask = tensors["mask"].astype(bool)
            provenance = {
                m: Provenance.from_dict(p) for m, p in config.get("provenance", {}).items()
            }
            return cls(
                logits,
                config["class_names"],
                ids=config["ids"],
                mask=mask,
                features=features,
                provenance=provenance,
                allow_in_sample=bool(config.get("allow_in_sample", False)),
            )
        except KeyError as err:
            raise ArtifactError(f"{directory} is incomplete: {err} is missing.") from err
        except (TypeError, ValueError) as err:
            # config.json and the tensors disagree (edited ids, class names, shapes, ...).
            raise ArtifactError(f"{directory} is inconsistent: {err}") from err

    # -- computing from experts -----------------------------------------------------------

    @classmethod
    def from_experts(
        cls,
        experts: Mapping[str, LogitSource],
        dataset: Dataset,
        *,
        split: str = "",
        batch_size: int = 32,
        features: bool = False,
        cache: LogitCache | str | os.PathLike[str] | None = None,
        id_column: str = "id",
        progress: bool = True,
    ) -> LogitSet:
        """Run each expert over ``dataset`` and collect their logits (``progress``: show
        the experts' progress bars).

        With ``cache`` (a :class:`LogitCache` or a directory), logits already computed for
        the same expert weights, dataset fingerprint and split are read back instead of
        recomputed. Rows whose input for an expert's expert_name is ``None`` are marked
        missing for that expert.

        Example:
            >>> logits = LogitSet.from_experts({"image": img, "text": txt},  # doctest: +SKIP
            ...                                ds["validation"], split="validation")
        """
        if not experts:
            raise ModalityError("from_experts needs at least one expert.")
        if cache is not None and not isinstance(cache, LogitCache):
            cache = LogitCache(cache)
        names = [list(e.class_names) for e in experts.values()]
        reference = names[0]
        parts: list[LogitSet] = []
        data_fingerprint = dataset_fingerprint(dataset)
        for name, expert in experts.items():
            if set(expert.class_names) != set(reference):
                raise ClassMismatchError(
                    f"expert {name!r} predicts {list(expert.class_names)!r} but the first "
                    f"expert predicts {reference!r}; fine-tune all experts on one label space."
                )
            provenance = Provenance(
                expert=type(expert).__name__,
                checkpoint=str(getattr(expert, "checkpoint", "")),
                fingerprint=expert.fingerprint(),
                split=split,
                dataset_fingerprint=data_fingerprint,
                trained_on=_seen_fingerprints(expert, dataset),
            )
            key = (cache.key(provenance, features=features, id_column=id_column)
                   if cache is not None else "")
            part = cache.get(key) if cache is not None else None
            if part is None:
                part = _compute_part(name, expert, dataset, provenance,
                                     batch_size=batch_size, features=features,
                                     id_column=id_column, progress=progress)
                if cache is not None:
                    cache.put(key, part)
            parts.append(part.align(class_names=reference))
        result = parts[0]
        for part in parts[1:]:
            result = result.merge(part)
        return result


def _mask_array(
    mask: np.ndarray | Mapping[str, np.ndarray] | None, expert_names: tuple[str, ...], rows: int
) -> np.ndarray:
    """A fresh boolean ``[rows, M]`` presence mask from an array, a mapping or ``None``."""
    if mask is None:
        return np.ones((rows, len(expert_names)), dtype=bool)
    if isinstance(mask, Mapping):
        extra = set(mask) - set(expert_names)
        if extra:
            raise ModalityError(
                f"mask names experts {sorted(extra)!r} that have no logits; "
                f"known: {list(expert_names)!r}."
            )
        columns = [
            np.asarray(mask.get(m, np.ones(rows, dtype=bool)), dtype=bool).reshape(-1)
            for m in expert_names
        ]
        array = np.stack(columns, axis=1)
    else:
        array = np.array(mask, dtype=bool)
    if array.shape != (rows, len(expert_names)):
        raise ModalityError(
            f"mask must have shape [N, M] = {(rows, len(expert_names))}, got {array.shape}."
        )
    return array


def _seen_fingerprints(expert: Any, dataset: Any) -> tuple[str, ...]:
    """The dataset fingerprints ``expert`` was trained on (``seen_fingerprints`` when the
    expert has it: some kinds know per dataset, e.g. precomputed scores with train ids)."""
    seen = getattr(expert, "seen_fingerprints", None)
    if seen is not None:
        return tuple(seen(dataset))
    return tuple(getattr(expert, "trained_on_", ()) or ())


def _compute_part(
    expert_name: str,
    expert: LogitSource,
    dataset: Dataset,
    provenance: Provenance,
    *,
    batch_size: int,
    features: bool,
    id_column: str,
    progress: bool = True,
) -> LogitSet:
    output = expert.predict_logits(dataset, batch_size=batch_size, return_features=features,
                                   progress=progress)
    if features:
        logits, embedded = output
    else:
        logits, embedded = output, None
    ids = dataset[id_column] if id_column in dataset.column_names else None
    input_column = getattr(expert, "input_column", None)
    present_rows = getattr(expert, "present_rows", None)
    mask = None
    if present_rows is not None:
        # The expert knows its input column and checks it without decoding every image.
        mask = np.asarray(present_rows(dataset), dtype=bool)[:, None]
    elif input_column and input_column in dataset.column_names:
        mask = np.array([value is not None for value in dataset[input_column]], dtype=bool)
        mask = mask[:, None]
    return LogitSet(
        {expert_name: logits},
        list(expert.class_names),
        ids=ids,
        mask=mask,
        features={expert_name: embedded} if embedded is not None else None,
        provenance={expert_name: provenance},
    )


class LogitCache:
    """A directory of :class:`LogitSet` artifacts keyed by expert and data fingerprints.

    Example:
        >>> cache = LogitCache("runs/logit-cache")  # doctest: +SKIP
        >>> LogitSet.from_experts(experts, ds["validation"], split="validation",
        ...                       cache=cache)  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(provenance: Provenance, *, features: bool, id_column: str = "id") -> str:
        """Cache key of one expert's logits on one dataset."""
        if not provenance.fingerprint or not provenance.dataset_fingerprint:
            return ""
        text = "|".join(
            [provenance.fingerprint, provenance.dataset_fingerprint, provenance.split,
             "features" if features else "logits", id_column]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, key: str) -> LogitSet | None:
        """The cached set under ``key``, or ``None`` (also for an unreadable entry)."""
        if not key:
            return None
        path = self.directory / key
        if not (path / _CONFIG).is_file():
            return None
        try:
            return LogitSet.load(path)
        except ArtifactError:
            return None

    def put(self, key: str, logits: LogitSet) -> None:
        """Store ``logits`` under ``key`` (atomic; a no-op for an empty key)."""
        if key:
            logits.save(self.directory / key)
