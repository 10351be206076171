"""The :class:`Expert` contract: one model that reads one named input column.

An expert has a ``column`` (the dataset column or predictor input it reads), a
``modality`` (the kind of values in it: ``image``, ``text``, ``tabular``, ...), and a
``labels`` :class:`~ensemble.labels.LabelSpace`. It is fitted on a ``datasets.Dataset``,
returns logits ``[N, C]`` for a dataset or a list of raw values (``None`` where the input is
missing), and saves to a folder with an ``ensemble.json`` metadata file next to whatever
its own library reads. Kinds register with
:func:`~ensemble.experts.registry.register_expert`; :func:`~ensemble.experts.load_expert`
loads any of them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._io import FORMAT_VERSION, library_versions, read_json, write_json
from ..exceptions import (
    ArtifactError,
    ConfigError,
    DataError,
    ExportError,
    ModalityError,
    UnknownNameError,
)
from ..fingerprints import dataset_fingerprint
from ..labels import LabelSpace, softmax

__all__ = ["METADATA", "Expert", "LogitOutputs", "load_expert", "read_metadata"]

#: The file in every saved expert folder that holds the ensemble's own metadata.
METADATA = "ensemble.json"


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``ensemble.json`` of a saved expert folder (format-checked)."""
    directory = Path(directory)
    path = directory / METADATA
    if not path.is_file():
        hint = ""
        if (directory / "config.json").is_file():
            hint = (" It looks like an expert saved by an older version of ensemble (format 1); "
                    "re-run the fine-tuning (e.g. `ensemble run --force`) to rebuild it.")
        raise ArtifactError(f"{directory} is not a saved expert: {METADATA} is missing.{hint}")
    metadata = read_json(path)
    version = metadata.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r} is not one this library reads (up to "
            f"{FORMAT_VERSION}); upgrade `late-fusion` or re-save the expert."
        )
    return metadata


def load_expert(directory: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a saved expert of any registered kind: the folder's ``ensemble.json`` names the
    kind, and that class rebuilds the expert (never by unpickling).

    Example:
        >>> expert = load_expert("runs/quickstart/experts/image")  # doctest: +SKIP
    """
    from .registry import get_expert_class

    directory = Path(directory)
    metadata = read_metadata(directory)
    kind = metadata.get("kind")
    try:
        cls = get_expert_class(str(kind))
    except UnknownNameError as err:
        raise ArtifactError(
            f"{directory} holds an expert of kind {kind!r}, which is not registered here "
            f"({err}); import the module that registers it first."
        ) from None
    return cls.load_saved(directory, metadata, **kwargs)


class LogitOutputs(ABC):
    """``embed`` and ``predict_proba`` derived from ``predict_logits`` (experts, bagged)."""

    @abstractmethod
    def predict_logits(self, data: Any, *, batch_size: int = 64, return_features: bool = False,
                       progress: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Logits ``[N, C]`` (and embeddings ``[N, D]`` with ``return_features``)."""

    def embed(self, data: Any, *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Pre-logit features ``[N, D]`` (what the classifier layer reads)."""
        _, features = self.predict_logits(data, batch_size=batch_size, return_features=True,
                                          progress=progress)
        return features

    def predict_proba(self, data: Any, *, batch_size: int = 64,
                      progress: bool = True) -> np.ndarray:
        """Probabilities ``[N, C]`` (softmax of the logits)."""
        logits = self.predict_logits(data, batch_size=batch_size, progress=progress)
        return softmax(np.asarray(logits, dtype=np.float32), axis=1)


    def seen_fingerprints(self, dataset: Any) -> tuple[str, ...]:
        """Fingerprints of the datasets this model was trained on, as far as ``dataset``
        is concerned (the leakage guard flags logits on any of them as in-sample)."""
        return tuple(getattr(self, "trained_on_", ()) or ())


class Expert(LogitOutputs):
    """One model over one input column, predicting one label space.

    Subclasses set :attr:`modality`, register with ``@register_expert("kind")`` and
    implement :meth:`fit`, :meth:`predict_logits`, :meth:`fingerprint`,
    :meth:`save_pretrained` and the classmethod :meth:`load_saved`. ``__init__`` stores its
    arguments; models are built on first use.

    Example:
        >>> from ensemble.experts import create_expert
        >>> expert = create_expert("sklearn", column="meta", labels=["a", "b"])
        >>> expert.column, expert.class_names
        ('meta', ['a', 'b'])
    """

    #: The kind of input this expert reads (a registered modality name).
    modality: ClassVar[str] = ""
    #: The registry name (set by ``@register_expert``).
    registry_name: ClassVar[str] = ""
    #: Whether :meth:`fit` and :meth:`predict_logits` run data-parallel over the processes
    #: of ``torchrun`` / ``accelerate launch`` (then every process must call them, together).
    data_parallel: ClassVar[bool] = False

    column: str
    labels: LabelSpace

    def __init__(self, *, column: str, labels: LabelSpace | Sequence[str], seed: int = 0) -> None:
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"column must name the input column this expert reads, got {column!r}."
            )
        self.column = column
        self.labels = LabelSpace.coerce(labels)
        self.seed = seed
        self.trained_on_: list[str] = []

    # -- shared properties ----------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """The label space's names, in order (the logits' columns)."""
        return list(self.labels.names)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_column(self) -> str:
        """Alias of :attr:`column`."""
        return self.column

    @property
    def checkpoint(self) -> str:
        """The pretrained source (empty for kinds that have none)."""
        return str(getattr(self, "_checkpoint", "") or "")

    def __repr__(self) -> str:
        source = f"{self.checkpoint!r}, " if self.checkpoint else ""
        return (f"{type(self).__name__}({source}column={self.column!r}, "
                f"classes={self.num_classes})")

    # -- reading inputs -------------------------------------------------------------------

    def require_column(self, dataset: Any) -> None:
        """Raise :class:`DataError` unless ``dataset`` is a Dataset with this expert's column."""
        names = getattr(dataset, "column_names", None)
        if names is None:
            raise DataError(
                f"expected a datasets.Dataset or a list of inputs, got {type(dataset).__name__}."
            )
        if self.column not in names:
            raise DataError(
                f"the dataset has no column {self.column!r}, which the {self.registry_name} "
                f"expert reads (columns: {names!r}); rename the column or build the expert "
                "with column=<the column's name>."
            )
        self._check_modality(dataset.features[self.column])

    def _check_modality(self, feature: Any) -> None:
        """Refuse a column whose values are of another modality than this expert reads."""
        from ..modalities import get_modality, list_modalities

        if self.modality not in list_modalities() or get_modality(self.modality).accepts(feature):
            return
        held = [m for m in list_modalities() if get_modality(m).matches(feature)]
        what = f"{held[0]} values" if held else f"values of type {feature}"
        raise ModalityError(
            f"column {self.column!r} holds {what}, but the {self.registry_name} expert reads "
            f"{self.modality} inputs; point the expert at a column of {self.modality} inputs "
            "(column=...), or declare the column's modality when loading the data."
        )

    def column_values(self, data: Any) -> list[Any]:
        """This expert's input values: a dataset's column (undecoded formats kept), a list of
        values, or one value."""
        if isinstance(data, (list, tuple)):
            return list(data)
        if hasattr(data, "column_names"):
            self.require_column(data)
            return list(data.with_format(None)[self.column])
        return [data]

    def present_rows(self, data: Any) -> np.ndarray:
        """Boolean ``[N]``: rows whose input for this expert is not missing."""
        if isinstance(data, (list, tuple)):
            return np.array([value is not None for value in data], dtype=bool)
        self.require_column(data)
        column = data
        feature = data.features.get(self.column)
        if getattr(feature, "decode", False):  # read image/audio presence without decoding
            column = data.cast_column(self.column, type(feature)(decode=False))
        return np.array([value is not None for value in column[self.column]], dtype=bool)

    def encode_labels(self, dataset: Any, label_column: str = "label") -> np.ndarray:
        """The labels of ``dataset`` as indices into :attr:`labels` (matched by name)."""
        return self.labels.encode_column(dataset, label_column)

    def require_two_classes(self, labels: np.ndarray) -> None:
        """Raise :class:`DataError` unless the training rows with an input (their label
        indices, ``labels``) hold at least two classes."""
        seen = np.unique(labels)
        if seen.size < 2:
            raise DataError(
                f"every training row with a {self.column!r} input has the class "
                f"{self.labels[int(seen[0])]!r}; a classifier needs at least two classes to "
                "learn from (check the training split, or how it was subsampled)."
            )

    def record_trained_on(self, train: Any) -> None:
        """Remember ``train``'s fingerprint in :attr:`trained_on_` (the leakage guard)."""
        fingerprint = dataset_fingerprint(train)
        if fingerprint and fingerprint not in self.trained_on_:
            self.trained_on_.append(fingerprint)

    def require_fitted(self, attribute: str) -> None:
        """Raise :class:`NotFittedError` unless ``attribute`` (a fitted attribute) is set."""
        if not hasattr(self, attribute):
            from ..exceptions import NotFittedError  # built on first use (imports sklearn)

            raise NotFittedError(
                f"the {self.registry_name} expert on {self.column!r} is not fitted; call "
                "fit(train) first."
            )

    # -- the contract ---------------------------------------------------------------------

    @abstractmethod
    def fit(self, train: Any, eval_dataset: Any | None = None, *, config: Any = None,
            label_column: str = "label", **train_args: Any) -> Expert:
        """Fit on ``train`` (a ``datasets.Dataset``); ``eval_dataset`` may pick the best epoch."""

    @classmethod
    def training_config(cls, options: Mapping[str, Any], *, seed: int = 0,
                        progress: bool = True) -> Any:
        """The ``config=`` that :meth:`fit` takes, built from a recipe's ``training:`` mapping
        (``seed``/``progress``: the run's defaults). Kinds without training options refuse
        a non-empty mapping and return ``None``.
        """
        if options:
            raise ConfigError(
                f"the {cls.registry_name} expert takes no training options (got "
                f"{sorted(options)!r}); its settings go in the expert's options."
            )
        return None

    def check_ids(self, ids: Sequence[str]) -> None:
        """Check the expert's own data against every example id of the dataset (no-op
        except for kinds that bring their own rows, such as precomputed scores)."""

    def fold_config(self, config: Any, work_dir: Path | None) -> Any:
        """``config`` for one cross-fitting fold (``work_dir``: resumable state, if any)."""
        return config

    def resume_config(self, config: Any, work_dir: Path) -> Any:
        """``config`` for a fit that keeps resumable state in ``work_dir`` (if the kind can)."""
        return config

    @abstractmethod
    def fingerprint(self) -> str:
        """sha256 identifying the fitted model (changes whenever its predictions can)."""

    @abstractmethod
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the expert to ``directory`` atomically (with :data:`METADATA`)."""

    @classmethod
    @abstractmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any], **kwargs: Any) -> Expert:
        """Rebuild an expert from a folder written by :meth:`save_pretrained`."""

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Load a saved expert of this class (or, on :class:`Expert`, of any kind)."""
        expert = load_expert(directory, **kwargs)
        if cls is not Expert and not isinstance(expert, cls):
            raise ArtifactError(f"{directory} holds a {type(expert).__name__}, not a "
                                f"{cls.__name__}; use ensemble.load_expert() for any kind.")
        return expert

    # -- export ---------------------------------------------------------------------------

    #: Whether this kind predicts without torch (its saved folder then runs as it is in the
    #: ONNX runtime, see :meth:`export_onnx`).
    torch_free: ClassVar[bool] = False

    def export_onnx(self, directory: Path) -> dict[str, Any]:
        """Write what the torch-free runtime needs into ``directory`` and return its entry in
        the export's ``config.json``. Torch-free kinds save their own folder there and run
        with their own code; torch kinds override this to write an ONNX graph."""
        if not self.torch_free:
            raise ExportError(
                f"the {self.registry_name} expert on column {self.column!r} "
                f"({type(self).__name__}) has no ONNX export: it needs torch to predict and "
                "does not implement export_onnx()."
            )
        self.save_pretrained(directory)
        return {"runtime": "native"}

    # -- persistence helpers for subclasses -----------------------------------------------

    def hyper_parameters(self) -> dict[str, Any]:
        """JSON-able constructor arguments beyond column/labels/seed (for re-creation)."""
        return {}

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """The :data:`METADATA` record every kind writes (kind, column, labels, identity)."""
        return {
            "kind": self.registry_name,
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "modality": self.modality,
            "column": self.column,
            "class_names": self.class_names,
            "checkpoint": self.checkpoint,
            "seed": self.seed,
            "params": self.hyper_parameters(),
            "trained_on": list(self.trained_on_),
            "fingerprint": self.fingerprint(),
            "versions": library_versions(),
            **extra,
        }

    def write_metadata(self, directory: Path, **extra: Any) -> None:
        write_json(directory / METADATA, self.metadata(**extra))

    def check_loaded(self, directory: Path, metadata: Mapping[str, Any]) -> None:
        """Refuse a folder whose files do not match the fingerprint its metadata records."""
        recorded = metadata.get("fingerprint")
        if recorded and recorded != self.fingerprint():
            raise ArtifactError(
                f"{directory}: the saved model does not match the fingerprint in {METADATA}; "
                "the folder was modified after saving. Re-save the expert."
            )
        self.trained_on_ = [str(f) for f in metadata.get("trained_on", [])]
