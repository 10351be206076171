"""The stage runner behind ``ensemble run``: finetune -> logits -> fuse -> evaluate -> bundle.

Every stage writes one artifact directory under the run directory and, once it is complete,
a marker ``stages/<stage>.json`` holding the fingerprint of its inputs (resolved config
section + upstream fingerprints), its resolved config and the sha256 of every file it
wrote. A stage whose marker matches its inputs and whose files are intact is skipped, so a
re-run only redoes what changed or was lost. A killed fine-tune resumes from its last
finished epoch (the training checkpoints live in ``work/`` until the expert is saved).

Example:
    >>> from ensemble.pipeline import Pipeline
    >>> from ensemble.recipe import load_recipe
    >>> result = Pipeline(load_recipe("recipes/synthetic.yaml")).run()  # doctest: +SKIP
    >>> result.bundle  # doctest: +SKIP
    PosixPath('runs/synthetic/bundle')
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ._io import (
    atomic_directory,
    ensure_writable,
    library_versions,
    read_json,
    sha256_file,
    write_json,
)
from .exceptions import ArtifactError, ConfigError
from .fingerprints import dataset_fingerprint
from .launch import Processes, alone, processes
from .recipe import DATA_SOURCES, Recipe, data_loader, fingerprint, resolve_checkpoint

__all__ = ["STAGES", "Pipeline", "PipelineResult", "StageResult", "StageRunner"]

#: The stages in order; ``Pipeline.run(until=...)`` stops after the named one.
STAGES: tuple[str, ...] = ("finetune", "logits", "fuse", "evaluate", "bundle")
_LABELS_FILE = "labels.json"
_LOGITS_DIR = "logits"
_MARKERS = "stages"
#: The logits split of a cross-fitted run: out-of-fold logits over train + fit split.
OUT_OF_FOLD = "out_of_fold"


@dataclass
class StageResult:
    """What one stage did: its artifact, fingerprint and whether it was skipped."""

    stage: str
    directory: Path
    fingerprint: str
    skipped: bool
    seconds: float = 0.0


class StageRunner:
    """Runs a stage unless its artifact is already there with the same fingerprint.

    On several processes (``group``) the main process decides whether a stage is up to
    date, runs a stage's build on its own (the others wait) unless the stage is
    *collective*, and alone writes the markers.
    """

    def __init__(self, run_dir: Path, *, force: bool = False,
                 log: Callable[[str], None] = print, group: Processes | None = None) -> None:
        self.run_dir = run_dir
        self.force = force
        self.log = log
        self.group = group or Processes()

    def marker(self, stage: str) -> Path:
        return self.run_dir / _MARKERS / f"{stage}.json"

    def up_to_date(self, stage: str, directory: Path, digest: str) -> bool:
        """True when ``stage``'s marker matches ``digest`` and every file is intact."""
        marker = self.marker(stage)
        if not marker.is_file():
            return False
        try:
            record = read_json(marker)
        except ArtifactError:
            return False
        if record.get("fingerprint") != digest:
            return False
        files = record.get("files")
        if not isinstance(files, dict) or not files:
            return False
        try:
            return _file_digests(directory) == files
        except OSError:
            return False

    def run(self, stage: str, directory: Path, inputs: Mapping[str, Any],
            build: Callable[[Path], None], *, collective: bool = False) -> StageResult:
        """Skip ``stage`` when up to date, else ``build(directory)`` and record it.

        ``collective``: every process runs ``build`` (it fine-tunes or predicts
        data-parallel and writes on the main process only); otherwise the main process runs
        it :func:`~ensemble.launch.alone` while the others wait.
        """
        digest = fingerprint(inputs)
        group = self.group
        fresh = group.share(group.is_main and not self.force
                            and self.up_to_date(stage, directory, digest))
        if fresh:
            self.log(f"skip {stage}: up to date ({_relative(directory, self.run_dir)})")
            return StageResult(stage, directory, digest, skipped=True)
        self.log(f"run  {stage} -> {_relative(directory, self.run_dir)}")
        if group.is_main:
            self.marker(stage).unlink(missing_ok=True)
        started = time.perf_counter()
        if collective:
            build(directory)
        elif group.is_main:
            with alone():
                build(directory)
        group.wait()
        seconds = time.perf_counter() - started
        if not group.is_main:
            return StageResult(stage, directory, digest, skipped=False, seconds=seconds)
        write_json(self.marker(stage), {
            "stage": stage,
            "fingerprint": digest,
            "inputs": inputs,
            "artifact": _relative(directory, self.run_dir),
            "files": _file_digests(directory),
            "seconds": round(seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": library_versions(),
        })
        self.log(f"done {stage} in {seconds:.1f}s")
        return StageResult(stage, directory, digest, skipped=False, seconds=seconds)


def _file_digests(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*")) if path.is_file()
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass
class PipelineResult:
    """The stages run (or skipped) and where the main artifacts are."""

    run_dir: Path
    stages: list[StageResult] = field(default_factory=list)
    report: Path | None = None
    bundle: Path | None = None
    leaderboard: str = ""
    #: False on the processes of a multi-process run that only helped (they print nothing).
    main_process: bool = True

    def skipped(self) -> list[str]:
        return [s.stage for s in self.stages if s.skipped]

    def ran(self) -> list[str]:
        return [s.stage for s in self.stages if not s.skipped]


class Pipeline:
    """Runs a :class:`~ensemble.recipe.Recipe` stage by stage under its run directory.

    Layout of ``run_dir``: ``recipe.json`` (resolved recipe), ``experts/<name>/``,
    ``logits/<split>/``, ``combiners/<label>/``, ``report/`` (``report.md``,
    ``metrics.json``, ``plots/``), ``bundle/`` (a :class:`~ensemble.FusionPredictor`),
    ``stages/<stage>.json`` (fingerprints) and ``work/`` (resumable training state).
    """

    def __init__(self, recipe: Recipe, *, run_dir: str | Path | None = None,
                 force: bool = False, quiet: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir or recipe.run_dir or Path("runs") / recipe.name)
        self.quiet = quiet
        self.log = log or (_silent if quiet else _to_stderr)
        self.runner = StageRunner(self.run_dir, force=force, log=self.log)
        self._experts: dict[str, Any] = {}
        self._checkpoints: dict[str, Any] = {}
        self._fingerprints: dict[str, str] = {}

    # -- shared inputs ------------------------------------------------------------------

    @cached_property
    def data_fingerprint(self) -> str:
        data = dataclasses.asdict(self.recipe.data)
        data.pop("note", None)
        return fingerprint({"data": data, "loader": DATA_SOURCES[self.recipe.data.source]})

    @cached_property
    def dataset(self) -> Any:
        """The recipe's dataset (loaded on first use only)."""
        loader = data_loader(self.recipe.data.source)
        self.log(f"load data: {self.recipe.data.source}")
        dataset = loader(**self.recipe.data.options)
        from .data import require_splits

        data = self.recipe.data
        require_splits(dataset, {"data.train_split": data.train_split,
                                 "data.fit_split": data.fit_split,
                                 "data.test_split": data.test_split})
        return dataset

    @cached_property
    def pool(self) -> Any:
        """``train_split`` + ``fit_split`` as one dataset: what cross-fitting folds."""
        from .crossfit import pool_splits

        data = self.recipe.data
        return pool_splits(self.dataset, [data.train_split, data.fit_split])

    @cached_property
    def labels(self) -> Any:
        """The dataset's :class:`~ensemble.labels.LabelSpace`."""
        from .labels import LabelSpace

        return LabelSpace.from_dataset(self.dataset)

    @property
    def class_names(self) -> list[str]:
        return list(self.labels.names)

    # -- the run ------------------------------------------------------------------------

    def run(self, until: str = "bundle") -> PipelineResult:
        """Run every stage up to and including ``until`` (one of :data:`STAGES`)."""
        if until not in STAGES:
            raise ConfigError(f"unknown stage {until!r}; choose one of {list(STAGES)!r}.")
        group = self.group()
        self.runner.group = group
        if not group.is_main:
            self.log = self.runner.log = _silent
        with group.main_first():
            if group.is_main:
                # Before any data loading or fine-tuning: an unwritable or full run
                # directory fails here (OutputError), not at the first save hours later.
                ensure_writable(self.run_dir)
                write_json(self.run_dir / "recipe.json", self.recipe.to_dict())
            if group.count > 1:
                self._load_shared_inputs()
        result = PipelineResult(self.run_dir, main_process=group.is_main)
        steps: dict[str, Callable[[PipelineResult], None]] = {
            "finetune": self._finetune,
            "logits": self._logits,
            "fuse": self._fuse,
            "evaluate": self._evaluate,
            "bundle": self._bundle,
        }
        for stage in STAGES[: STAGES.index(until) + 1]:
            steps[stage](result)
        return result

    def _load_shared_inputs(self) -> None:
        """On several processes, what the stages read and a first use may write (a dataset
        cache, a converted checkpoint): loaded up front, the main process first, so the
        processes never wait on one another inside a stage only some of them run."""
        self.dataset  # noqa: B018 - a cached property, loaded here on purpose
        for name in self.recipe.experts:
            self.checkpoint(name)

    def checkpoint(self, name: str) -> Any:
        """Expert ``name``'s resolved checkpoint (``None`` when its kind takes none)."""
        if name not in self._checkpoints:
            spec = self.recipe.experts[name]
            self._checkpoints[name] = (
                resolve_checkpoint(spec.checkpoint, self.run_dir / "checkpoints")
                if spec.checkpoint else None)
        return self._checkpoints[name]

    def group(self) -> Processes:
        """The processes of this run (inside :func:`~ensemble.launch.alone`, this one):
        through the process group, or only the launcher's store when they share
        cross-fitting by whole folds (each then fine-tunes and saves on its own)."""
        return processes(via="store" if self.by_folds else "group")

    @property
    def by_folds(self) -> bool:
        """Whether the processes share cross-fitting by whole folds (``parallel: folds``)."""
        return bool(self.folds) and self.recipe.cross_fit.parallel == "folds"

    def _data_parallel(self, names: Any) -> bool:
        """Whether the experts ``names`` fine-tune and predict on all processes together."""
        from .experts import get_expert_class

        return any(get_expert_class(self.recipe.experts[n].type).data_parallel for n in names)

    def _record(self, result: PipelineResult, stage: StageResult) -> StageResult:
        result.stages.append(stage)
        self._fingerprints[stage.stage] = stage.fingerprint
        return stage

    # -- finetune -----------------------------------------------------------------------

    def expert_dir(self, name: str) -> Path:
        return self.run_dir / "experts" / name

    @property
    def folds(self) -> int:
        """Cross-fitting folds (0: experts train on the train split only)."""
        return self.recipe.cross_fit.folds

    @property
    def fit_logits_split(self) -> str:
        """The logits the combiners are fitted on: the fit split, or out-of-fold logits."""
        return OUT_OF_FOLD if self.folds else self.recipe.data.fit_split

    def _finetune(self, result: PipelineResult) -> None:
        for name, spec in self.recipe.experts.items():
            inputs = {"data": self.data_fingerprint, "expert": dataclasses.asdict(spec),
                      "seed": self.recipe.seed, "defaults": _expert_defaults(spec.type)}
            if self.folds:
                # How processes share the folds does not change the experts: not part of it.
                inputs["cross_fit"] = {"folds": self.folds}
            digest = fingerprint(inputs)
            work = self.run_dir / "work" / f"{name}-{digest[:12]}"
            self._record(result, self.runner.run(
                f"finetune-{name}", self.expert_dir(name), inputs,
                lambda target, n=name, w=work: self._train(n, target, w),
                collective=self.by_folds or self._data_parallel([name])))

    def _train(self, name: str, target: Path, work: Path) -> None:
        from .experts import create_expert, get_expert_class

        spec = self.recipe.experts[name]
        checkpoint = self.checkpoint(name)
        options = {"seed": self.recipe.seed, **spec.options, "column": spec.column,
                   "labels": self.labels}

        def make_expert() -> Any:
            return create_expert(spec.type, checkpoint, **options)

        group = self.group()  # on its own here unless this stage is collective
        config = get_expert_class(spec.type).training_config(
            spec.training, seed=self.recipe.seed, progress=not self.quiet and group.is_main)
        data = self.recipe.data
        train, held_out = self.dataset[data.train_split], self.dataset[data.fit_split]
        make_expert().check_ids([i for split in self.dataset.values() for i in split["id"]])
        self.log(f"fit {name}: {spec.type} expert on column {spec.column!r}"
                 + (f", {self.folds}-fold cross-fitting" if self.folds else ""))
        if self.folds:
            from .crossfit import cross_fit

            fitted = cross_fit(
                make_expert, self.pool,
                folds=self.folds, config=config, seed=self.recipe.seed, work_dir=work,
                batch_size=self.recipe.logits_batch_size, modality=name,
                trained_on=[dataset_fingerprint(train), dataset_fingerprint(held_out)],
                log=self.log, name=name, parallel=self.recipe.cross_fit.parallel)
            expert = fitted.expert
            if group.is_main:
                with atomic_directory(target) as tmp:
                    expert.save_pretrained(tmp)
                    fitted.oof.save(tmp / OUT_OF_FOLD)
        else:
            expert = make_expert()
            expert.fit(train, held_out, config=expert.resume_config(config, work))
            if group.is_main:
                expert.save_pretrained(target)
        self._experts[name] = expert
        if group.is_main:
            shutil.rmtree(work, ignore_errors=True)

    def experts(self) -> dict[str, Any]:
        """The fine-tuned experts, loaded from their artifacts when not in memory."""
        from .experts import load_expert

        for name in self.recipe.experts:
            if name not in self._experts:
                self._experts[name] = load_expert(self.expert_dir(name))
        return {name: self._experts[name] for name in self.recipe.experts}

    # -- logits -------------------------------------------------------------------------

    def logits_dir(self, split: str) -> Path:
        return self.run_dir / "logits" / split

    def _expert_fingerprints(self) -> dict[str, str]:
        return {name: self._fingerprints[f"finetune-{name}"] for name in self.recipe.experts}

    def _logits(self, result: PipelineResult) -> None:
        for split in dict.fromkeys((self.fit_logits_split, self.recipe.data.test_split)):
            inputs = {"data": self.data_fingerprint, "experts": self._expert_fingerprints(),
                      "split": split, "batch_size": self.recipe.logits_batch_size}
            # Test logits are predicted on all processes together (data-parallel), unless
            # folds were shared by whole folds: then by the main process, as one process
            # would, so the run stays bit-identical to one process.
            collective = (split != OUT_OF_FOLD and not self.by_folds
                          and self._data_parallel(self.recipe.experts))
            self._record(result, self.runner.run(
                f"logits-{split}", self.logits_dir(split), inputs,
                lambda target, s=split: self._compute_logits(s, target),
                collective=collective))

    def _compute_logits(self, split: str, target: Path) -> None:
        from .logits import LogitSet

        if split == OUT_OF_FOLD:
            # Scored during cross-fitting, each row by the fold expert that never saw it.
            dataset = self.pool
            parts = [LogitSet.load(self.expert_dir(name) / OUT_OF_FOLD)
                     for name in self.recipe.experts]
            logits = parts[0]
            for part in parts[1:]:
                logits = logits.merge(part)
        else:
            dataset = self.dataset[split]
            logits = LogitSet.from_experts(self.experts(), dataset, split=split, features=True,
                                           batch_size=self.recipe.logits_batch_size,
                                           progress=not self.quiet)
        if not self.group().is_main:
            return
        labels = self.labels.decode(self.labels.encode_column(dataset)).tolist()
        with atomic_directory(target) as tmp:
            logits.save(tmp / _LOGITS_DIR)
            write_json(tmp / _LABELS_FILE, {"ids": [str(i) for i in logits.ids],
                                            "labels": labels})

    def load_logits(self, split: str) -> tuple[Any, np.ndarray]:
        """The saved :class:`LogitSet` of ``split`` and its labels as class indices."""
        from .logits import LogitSet

        directory = self.logits_dir(split)
        logits = LogitSet.load(directory / _LOGITS_DIR)
        record = read_json(directory / _LABELS_FILE)
        if list(record.get("ids", [])) != [str(i) for i in logits.ids]:
            raise ArtifactError(f"{directory}: labels.json and the logits disagree on ids; "
                                "delete the folder and re-run.")
        from .labels import LabelSpace

        return logits, LabelSpace(logits.class_names).encode(list(record["labels"]))

    # -- fuse ---------------------------------------------------------------------------

    def combiner_dir(self, label: str) -> Path:
        return self.run_dir / "combiners" / label

    def _fuse(self, result: PipelineResult) -> None:
        fit_split = self.fit_logits_split
        for entry in self.recipe.combiners:
            candidates = [c for c in entry.params.get("candidates") or ()
                          if isinstance(c, str) and f"fuse-{c}" in self._fingerprints]
            inputs = {"combiner": dataclasses.asdict(entry),
                      "defaults": _combiner_defaults(entry.name),
                      "logits": self._fingerprints[f"logits-{fit_split}"],
                      "candidates": {c: self._fingerprints[f"fuse-{c}"] for c in candidates}}
            self._record(result, self.runner.run(
                f"fuse-{entry.label}", self.combiner_dir(entry.label), inputs,
                lambda target, e=entry: self._fit_combiner(e, target)))

    def _build_combiner(self, name: str, params: Mapping[str, Any]) -> Any:
        from .combiners import create_combiner, load_combiner

        params = dict(params)
        if "candidates" in params and params["candidates"] is not None:
            params["candidates"] = [
                load_combiner(self.combiner_dir(c))
                if isinstance(c, str) and f"fuse-{c}" in self._fingerprints
                else self._build_combiner(*_name_and_params(c))
                for c in params["candidates"]
            ]
        return create_combiner(name, **params)

    def _fit_combiner(self, entry: Any, target: Path) -> None:
        logits, labels = self.load_logits(self.fit_logits_split)
        combiner = self._build_combiner(entry.name, entry.params)
        combiner.fit(logits, labels)
        combiner.save(target)

    def combiners(self) -> dict[str, Any]:
        from .combiners import load_combiner

        return {e.label: load_combiner(self.combiner_dir(e.label)) for e in self.recipe.combiners}

    # -- evaluate -----------------------------------------------------------------------

    def _evaluate(self, result: PipelineResult) -> None:
        from . import report

        test_split = self.recipe.data.test_split
        inputs = {"combiners": {e.label: self._fingerprints[f"fuse-{e.label}"]
                                for e in self.recipe.combiners},
                  "logits": self._fingerprints[f"logits-{test_split}"],
                  "evaluation": dataclasses.asdict(self.recipe.evaluation),
                  "report_version": report.REPORT_VERSION}
        directory = self.run_dir / "report"

        def build(target: Path) -> None:
            logits, labels = self.load_logits(test_split)
            report.write_report(
                target, logits, labels, self.combiners(), config=self.recipe.evaluation,
                title=f"{self.recipe.name}: {test_split} split",
                fit_split=self._fit_description(),
            )

        self._record(result, self.runner.run("evaluate", directory, inputs, build))
        result.report = directory / "report.md"
        result.leaderboard = report.leaderboard_table(read_json(directory / "metrics.json"))

    def _fit_description(self) -> str:
        data = self.recipe.data
        if not self.folds:
            return data.fit_split
        return f"{data.train_split}+{data.fit_split} out-of-fold ({self.folds}-fold cross-fitting)"

    # -- bundle -------------------------------------------------------------------------

    def _bundle(self, result: PipelineResult) -> None:
        from .combiners import load_combiner
        from .predictor import FusionPredictor

        label = self.recipe.bundle_combiner
        inputs = {"experts": self._expert_fingerprints(),
                  "combiner": self._fingerprints[f"fuse-{label}"],
                  "batch_size": self.recipe.bundle.batch_size,
                  "recipe": fingerprint(self.recipe.to_dict())}
        directory = self.run_dir / "bundle"

        def build(target: Path) -> None:
            predictor = FusionPredictor(self.experts(), load_combiner(self.combiner_dir(label)),
                                        batch_size=self.recipe.bundle.batch_size)
            predictor.save(target, config={"recipe": self.recipe.to_dict(),
                                           "combiner_label": label})

        self._record(result, self.runner.run("bundle", directory, inputs, build))
        result.bundle = directory


def _name_and_params(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
        return entry["name"], dict(entry.get("params") or {})
    raise ConfigError(f"a candidate must be a combiner name or {{name, params}}, got {entry!r}.")


def _to_stderr(message: str) -> None:
    print(f"[ensemble] {message}", file=sys.stderr, flush=True)


def _silent(message: str) -> None:
    return None


def _signature_defaults(function: Any) -> dict[str, Any]:
    """The default values of ``function``'s keyword parameters."""
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def _expert_defaults(kind: str) -> dict[str, Any]:
    """What an expert kind and the fine-tuning loop do when a recipe leaves a setting out:
    part of a finetune stage's identity, so changed defaults retrain instead of reusing an
    expert trained under the old ones."""
    from .experts import get_expert_class
    from .experts.training import HEAD_LR_MULTIPLIER, TrainingConfig

    cls = get_expert_class(kind)
    defaults = getattr(cls, "default_training_config", TrainingConfig)()
    return {"kind": _signature_defaults(cls.__init__),
            "training": dataclasses.asdict(defaults),
            "head_lr_multiplier": HEAD_LR_MULTIPLIER}


def _combiner_defaults(name: str) -> dict[str, Any]:
    """A combiner's default hyper-parameters (part of its fuse stage's identity)."""
    from .combiners import get_combiner_class

    return _signature_defaults(get_combiner_class(name).__init__)
