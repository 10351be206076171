"""Recipes: one typed description of an end-to-end run (data, experts, combiners, report).

A recipe is a tree of dataclasses. YAML files under ``recipes/`` are parsed into it by
:func:`load_recipe`, which refuses unknown keys and wrong types with an error naming the
dotted key (``experts.image.training.epohcs``) and, where it can, suggesting the right one.
``--set key=value`` overrides (:func:`apply_overrides`) are applied to the raw mapping
before validation, so they get the same checks.

Example:
    >>> recipe = recipe_from_dict({
    ...     "name": "demo",
    ...     "data": {"source": "synthetic"},
    ...     "experts": {"image": {"checkpoint": "test_resnet",
    ...                           "options": {"pretrained": False}}},
    ...     "combiners": ["voting"],
    ... })
    >>> recipe.experts["image"].checkpoint, [c.label for c in recipe.combiners]
    ('test_resnet', ['voting'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .exceptions import ConfigError, UnknownNameError
from .launch import PARALLEL_MODES
from .report import EvaluationConfig
from .typed_values import did_you_mean, number_from_text, unknown_key

__all__ = [
    "CHECKPOINT_BUILDERS",
    "DATA_SOURCES",
    "LEGACY_MODALITIES",
    "BundleConfig",
    "CombinerConfig",
    "CrossFitConfig",
    "DataConfig",
    "EvaluationConfig",
    "ExpertConfig",
    "Recipe",
    "apply_overrides",
    "data_loader",
    "fingerprint",
    "import_plugins",
    "load_recipe",
    "recipe_from_dict",
    "resolve_checkpoint",
]


# -- registries ---------------------------------------------------------------------------


def data_loader(source: str) -> Callable[..., Any]:
    """The loader function behind ``data.source`` (see :data:`DATA_SOURCES`)."""
    from . import data

    return getattr(data, DATA_SOURCES[source])


#: ``data.source`` -> loader function name in :mod:`ensemble.data` (called with ``options``).
DATA_SOURCES: dict[str, str] = {
    "emoji": "load_emoji",
    "synthetic": "make_synthetic",
    "multimodal": "load_multimodal",
}

#: Loader options that hold local paths (checked for ``..``; see :func:`_resolve_data_paths`).
#: The bundle's combiner when a recipe names none (fitted too if the recipe lacks it).
DEFAULT_BUNDLE_COMBINER = "auto"
_PATH_OPTIONS = ("path_or_name", "data_files", "image_root", "image_path_template", "cache_dir",
                 "tarball")


#: The old two-expert recipe form: ``modality: image|text`` -> expert kind (and column).
LEGACY_MODALITIES: dict[str, str] = {"image": "timm", "text": "transformers"}


def _tiny_synthetic_text(directory: Path) -> Path:
    from .data import SYNTHETIC_FILLER, SYNTHETIC_WORDS
    from .testing import build_tiny_text_checkpoint

    words = {w for group in SYNTHETIC_WORDS.values() for w in group} | set(SYNTHETIC_FILLER)
    return build_tiny_text_checkpoint(directory, sorted(words))


#: Special checkpoint values that the recipe layer builds itself (never downloaded).
CHECKPOINT_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "tiny:synthetic": _tiny_synthetic_text,
}


def resolve_checkpoint(checkpoint: str, workdir: Path) -> str:
    """``checkpoint`` itself, or the folder a :data:`CHECKPOINT_BUILDERS` entry builds.

    Built checkpoints go to ``workdir/<name>`` and are reused when already complete.
    """
    builder = CHECKPOINT_BUILDERS.get(checkpoint)
    if builder is None:
        return checkpoint
    target = workdir / checkpoint.replace(":", "-")
    if not (target / "config.json").is_file():
        from ._io import atomic_directory

        with atomic_directory(target) as tmp:
            builder(tmp)
    return str(target)


# -- the recipe tree ----------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the examples come from.

    ``source`` names a loader in :data:`DATA_SOURCES`; ``options`` are its keyword
    arguments (for ``multimodal``: ``path_or_name``, ``inputs`` (named input columns, e.g.
    ``{photo: image, title: text, meta: [price, year]}``), ``image_column``, ``text_column``,
    ``label_column``, ``data_files``, ``column_names``, ``image_path_template``,
    ``validation_size``, ...). Relative local paths are resolved against the working
    directory and may not contain ``..``. Combiners are fitted on ``fit_split`` and the
    report is computed on ``test_split``; experts train on ``train_split``.
    """

    source: str = "synthetic"
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    fit_split: str = "validation"
    test_split: str = "test"
    note: str = ""


@dataclass
class ExpertConfig:
    """One expert: its registered ``type``, the input ``column`` it reads, its
    ``checkpoint`` (for kinds that have one), constructor ``options`` and ``training``
    arguments (:class:`~ensemble.experts.TrainingConfig` fields for torch experts).

    The old form without ``type`` still works: ``modality: image`` (or an expert keyed
    ``image``) means ``type: timm, column: image``, and ``text`` means
    ``type: transformers, column: text``.
    """

    type: str = ""
    column: str = ""
    checkpoint: str = ""
    modality: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


@dataclass
class CombinerConfig:
    """One combiner: a registry ``name``, its ``params`` and a unique ``label``.

    In YAML a bare string is shorthand for ``{name: <string>}``. A ``candidates`` param
    (ensemble selection) lists labels of combiners fitted earlier in the recipe, or names.
    """

    name: str
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class BundleConfig:
    """The saved predictor: which combiner (a label; empty = ``auto``, which is then
    fitted too if the recipe does not list it) and batch size."""

    combiner: str = ""
    batch_size: int = 32


@dataclass
class CrossFitConfig:
    """K-fold cross-fitting over ``train_split`` + ``fit_split`` (``folds: 0`` turns it off).

    Each expert is fine-tuned once per fold; combiners are fitted on the out-of-fold
    logits of the whole pool, and the fold experts, averaged, score the test split and go
    into the bundle (see :mod:`ensemble.crossfit`).
    """

    folds: int = 0
    #: Under ``torchrun`` / ``accelerate launch``: ``data`` fine-tunes each fold on all
    #: processes together, ``folds`` gives each process whole folds (bit-identical to one
    #: process; docs/scaling.md). Ignored by a run on one process.
    parallel: str = "data"


@dataclass
class Recipe:
    """A whole run. ``run_dir`` (default ``runs/<name>``) is relative to the working
    directory. ``plugins`` lists Python modules to import first: modules that register
    expert kinds or combiners of your own (``@register_expert("kind")``), so a recipe (and
    ``ensemble run``) can use them by name."""

    name: str
    data: DataConfig
    experts: dict[str, ExpertConfig]
    combiners: list[CombinerConfig]
    description: str = ""
    run_dir: str = ""
    seed: int = 0
    logits_batch_size: int = 64
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    bundle: BundleConfig = field(default_factory=BundleConfig)
    cross_fit: CrossFitConfig = field(default_factory=CrossFitConfig)
    plugins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain JSON-able data."""
        return dataclasses.asdict(self)

    def combiner(self, label: str) -> CombinerConfig:
        """The combiner entry with ``label``."""
        for entry in self.combiners:
            if entry.label == label:
                return entry
        raise _unknown("bundle.combiner", label, [c.label for c in self.combiners])

    @property
    def bundle_combiner(self) -> str:
        return self.bundle.combiner


# -- parsing ------------------------------------------------------------------------------


def _unknown(key: str, value: str, known: Sequence[str]) -> UnknownNameError:
    hint = did_you_mean(value, known, cutoff=0.5)
    return UnknownNameError(f"{key}: unknown value {value!r}.{hint} Known: {sorted(known)!r}.")


_SHORTHANDS: dict[type, Callable[[Any], Any]] = {
    CombinerConfig: lambda value: {"name": value} if isinstance(value, str) else value,
}


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(annotation: Any, value: Any, key: str) -> Any:
    """``value`` checked against ``annotation``; errors name ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, key)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, _SHORTHANDS.get(annotation, lambda v: v)(value), key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__} {value!r}.")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}.")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float) and isinstance(value, str):
        value = number_from_text(annotation, value, key)
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got the boolean {value!r}.")
    if not isinstance(value, annotation):
        raise ConfigError(
            f"{key} must be {_type_name(annotation)}, got {type(value).__name__} {value!r}."
        )
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    label = where or "recipe"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label} must be a mapping, got {type(data).__name__} {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise unknown_key(prefix + str(key), fields, label)
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        required = (spec.default is dataclasses.MISSING
                    and spec.default_factory is dataclasses.MISSING)
        if name not in data:
            if required:
                raise ConfigError(f"missing required key {prefix + name!r} in {label}.")
            continue
        values[name] = _convert(hints[name], data[name], f"{prefix}{name}")
    return cls(**values)


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Build and validate a :class:`Recipe` from plain data (e.g. parsed YAML)."""
    return _build(Recipe, data, "")


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply ``key=value`` ``overrides`` and validate it.

    Example:
        >>> recipe = load_recipe("recipes/synthetic.yaml", ["seed=3"])  # doctest: +SKIP
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} does not exist; give the path of a .yaml file.")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {err}") from err
    if raw is None:
        raise ConfigError(f"recipe {str(path)!r} is empty.")
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping at the top level.")
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    return recipe_from_dict(raw)


def _unique_key_loader() -> type:
    """A YAML SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the
    last one silently, so a second expert with the same name would replace the first)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ConfigError(
                        f"the key {key!r} appears twice in one mapping (line "
                        f"{seen[key].start_mark.line + 1} and line "
                        f"{key_node.start_mark.line + 1}); give every key (e.g. every expert "
                        "name) once."
                    )
                seen[key] = key_node
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted ``key=value`` overrides applied (values parsed as YAML).

    List items are addressed by index (``combiners.0.params.method=geometric``).

    Example:
        >>> apply_overrides({"evaluation": {"bootstrap": 1000}}, ["evaluation.bootstrap=10"])
        {'evaluation': {'bootstrap': 10}}
    """
    import yaml

    result = json.loads(json.dumps(raw))
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set expects key=value (e.g. experts.image.training.epochs=1), got {override!r}."
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {override!r}: the value is not valid YAML ({err}).") from err
        parts = key.strip().split(".")
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"--set {override!r}: {where} needs an index below {len(node)}."
                    )
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
            else:
                parent = ".".join(parts[:depth])
                raise ConfigError(f"--set {override!r}: {parent} is not a mapping.")
            if last:
                node[index] = value
            else:
                child = node[index] if isinstance(node, list) else node.get(index)
                if isinstance(child, str):  # a shorthand entry: "voting" -> {name: voting}
                    node[index] = {"name": child}
                elif not isinstance(child, (dict, list)):
                    node[index] = {}
                node = node[index]
    return result


# -- semantic checks ----------------------------------------------------------------------


def _check_kwargs(function: Callable[..., Any], given: Mapping[str, Any], key: str,
                  skip: Sequence[str] = ()) -> None:
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name in parameters if name not in ("self", *skip)]
    for name in given:
        if name not in accepted:
            raise unknown_key(f"{key}.{name}", accepted, key)


def import_plugins(modules: Sequence[str]) -> None:
    """Import each module (dotted name) so the kinds it registers are known."""
    import importlib

    for i, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"plugins[{i}]: cannot import {module!r} ({err}); give an importable module "
                "(on PYTHONPATH or installed) that registers your expert kinds or combiners."
            ) from None


def _validate(recipe: Recipe) -> None:
    from .combiners import get_combiner_class

    import_plugins(recipe.plugins)

    if not recipe.name or any(c in recipe.name for c in "/\\") or recipe.name.startswith("."):
        raise ConfigError(f"name must be a plain non-empty name (no slashes), got {recipe.name!r}.")
    loader = DATA_SOURCES.get(recipe.data.source)
    if loader is None:
        raise _unknown("data.source", recipe.data.source, list(DATA_SOURCES))
    _check_kwargs(data_loader(recipe.data.source), recipe.data.options, "data.options")
    if not recipe.experts:
        raise ConfigError("experts is empty; give at least one expert (e.g. experts.image).")
    for key in ("train_split", "fit_split", "test_split"):
        _check_plain(f"data.{key}", getattr(recipe.data, key))
    folds = recipe.cross_fit.folds
    if folds == 1 or folds < 0:
        raise ConfigError(
            f"cross_fit.folds must be 0 (off) or at least 2, got {folds}; 3 or 5 are usual."
        )
    if recipe.cross_fit.parallel not in PARALLEL_MODES:
        raise _unknown("cross_fit.parallel", recipe.cross_fit.parallel, list(PARALLEL_MODES))
    if recipe.cross_fit.parallel == "folds" and not folds:
        raise ConfigError("cross_fit.parallel: folds shares the cross-fitting folds between "
                          "processes, but cross_fit.folds is 0 (off); set cross_fit.folds "
                          "(e.g. 5) or use parallel: data.")
    if folds and recipe.data.fit_split in (recipe.data.train_split, recipe.data.test_split):
        raise ConfigError(
            "cross_fit pools data.train_split and data.fit_split; they must differ from each "
            f"other and from data.test_split (got {recipe.data.fit_split!r})."
        )
    for name, expert in recipe.experts.items():
        _check_plain(f"experts.{name}", name, what="expert name")
        _check_expert(name, expert, recipe.seed)
    if not recipe.combiners:
        raise ConfigError("combiners is empty; list at least one (e.g. combiners: [voting]).")
    if not recipe.bundle.combiner:
        recipe.bundle.combiner = DEFAULT_BUNDLE_COMBINER
        if all((c.label or c.name) != DEFAULT_BUNDLE_COMBINER for c in recipe.combiners):
            recipe.combiners.append(CombinerConfig(DEFAULT_BUNDLE_COMBINER))
    labels: list[str] = []
    for i, entry in enumerate(recipe.combiners):
        entry.label = entry.label or entry.name
        try:
            cls = get_combiner_class(entry.name)
        except UnknownNameError as err:
            raise UnknownNameError(f"combiners[{i}].name: {err}") from None
        _check_kwargs(cls.__init__, entry.params, f"combiners[{i}].params")
        if entry.label in labels or any(c in entry.label for c in "/\\") or entry.label[0] == ".":
            raise ConfigError(
                f"combiners[{i}].label {entry.label!r} is repeated or not a plain name; give "
                "each combiner a unique label."
            )
        for candidate in entry.params.get("candidates") or ():
            if isinstance(candidate, str) and candidate not in labels:
                get_combiner_class(candidate)
        labels.append(entry.label)
    if recipe.bundle.combiner and recipe.bundle.combiner not in labels:
        raise _unknown("bundle.combiner", recipe.bundle.combiner, labels)
    evaluation = recipe.evaluation
    if evaluation.bootstrap < 0 or not 0 < evaluation.confidence < 1 or evaluation.ece_bins < 1:
        raise ConfigError(
            "evaluation needs bootstrap >= 0, 0 < confidence < 1 and ece_bins >= 1, got "
            f"{evaluation!r}."
        )
    if recipe.logits_batch_size < 1 or recipe.bundle.batch_size < 1:
        raise ConfigError("logits_batch_size and bundle.batch_size must be positive integers.")
    _check_relative("run_dir", recipe.run_dir)
    if recipe.run_dir and (Path(recipe.run_dir).is_absolute() or recipe.run_dir.startswith("~")):
        raise ConfigError(
            f"run_dir {recipe.run_dir!r} is absolute; a recipe writes only below the working "
            "directory. Pass --run-dir (or Pipeline(run_dir=...)) to write elsewhere."
        )
    _resolve_data_paths(recipe)


def _check_expert(name: str, expert: ExpertConfig, seed: int) -> None:
    """Resolve the legacy ``modality`` form and check the kind, options and training."""
    from .experts import get_expert_class
    from .experts.registry import accepted_arguments

    key = f"experts.{name}"
    if not expert.type:
        legacy = expert.modality or name
        if legacy not in LEGACY_MODALITIES:
            from .experts import list_experts

            raise UnknownNameError(
                f"{key}.type is missing; give the expert kind, one of {list_experts()!r} "
                f"(e.g. type: timm, column: photo). The old form 'modality: image|text' is "
                f"still read, but {legacy!r} is not one of {sorted(LEGACY_MODALITIES)!r}."
            )
        expert.type = LEGACY_MODALITIES[legacy]
        expert.column = expert.column or legacy
    try:
        cls = get_expert_class(expert.type)
    except UnknownNameError as err:
        raise UnknownNameError(f"{key}.type: {err}") from None
    accepted = accepted_arguments(cls)
    if "column" not in accepted:  # e.g. "bagged": it wraps experts that are already fitted
        from .experts import list_experts

        buildable = [k for k in list_experts()
                     if "column" in accepted_arguments(get_expert_class(k))]
        raise ConfigError(f"{key}.type: {expert.type!r} is not a kind a recipe can build (it "
                          f"reads no input column); choose one of {buildable!r}.")
    if not expert.column:
        default = inspect.signature(cls.__init__).parameters.get("column")
        if default is None or default.default is inspect.Parameter.empty:
            raise ConfigError(f"{key}.column is missing: name the input column this "
                              f"{expert.type} expert reads.")
        expert.column = str(default.default)
    _check_plain(f"{key}.column", expert.column, what="column name")
    if "checkpoint" in accepted and not expert.checkpoint:
        raise ConfigError(f"{key}.checkpoint is missing: the {expert.type} expert needs a "
                          "pretrained checkpoint (a name or a local folder).")
    if "checkpoint" not in accepted and expert.checkpoint:
        raise ConfigError(f"{key}.checkpoint: the {expert.type} expert takes no checkpoint; "
                          f"drop it (its settings go in {key}.options).")
    _check_kwargs(cls.__init__, expert.options, f"{key}.options",
                  skip=("checkpoint", "labels", "column"))
    try:
        cls.training_config(expert.training, seed=seed)
    except ConfigError as err:
        message = str(err)
        if "training." in message:  # from_options names the field as training.<field>
            message = message.replace("training.", f"{key}.training.", 1)
            raise ConfigError(message.replace("in training:", f"in {key}.training:")) from None
        raise ConfigError(f"{key}.training: {message}") from None


def _check_plain(key: str, value: str, *, what: str = "name") -> None:
    """Names that become folder names (experts, splits) may not leave their folder."""
    if not value or value.startswith(".") or any(c in value for c in "/\\:"):
        raise ConfigError(
            f"{key}: {value!r} is not a plain {what}; it becomes a folder name under the run "
            "directory, so use letters, digits, '-' or '_' (no '/', '\\', ':' or leading '.')."
        )


def _check_relative(key: str, value: str) -> None:
    if value and not Path(value).is_absolute() and ".." in Path(value).parts:
        raise ConfigError(f"{key} {value!r} may not contain '..'; give a path inside the folder.")


def _resolve_data_paths(recipe: Recipe) -> None:
    """Check local paths in ``data.options``: relative ones may not contain ``..``.

    Paths are kept as written (a recipe is never rewritten, so one YAML has one fingerprint
    wherever it runs): ``path_or_name``, ``image_root``, ``cache_dir`` and ``tarball`` are
    read relative to the working directory; ``data_files`` relative to the dataset folder
    they are read from, and ``image_path_template`` to ``image_root`` (or that folder).
    """
    for name in _PATH_OPTIONS:
        value = recipe.data.options.get(name)
        for item in _strings(value):
            _check_relative(f"data.options.{name}", item)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def fingerprint(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON: the identity of a stage's inputs."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
