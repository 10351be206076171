"""``load_multimodal``: bring your own data as named input columns, an id and a label.

Every dataset it returns is a ``datasets.DatasetDict`` whose splits share the columns ``id``
(a string, unique across splits and stable across runs), ``label`` (a ``ClassLabel`` whose
names are the label space) and one column per declared input, named after the input, plus
the source's other columns. See :func:`load_multimodal` and ``docs/data.md``.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, DataError
from ..labels import LabelSpace
from ..modalities import ColumnContext, TabularFields, get_modality
from .files import check_column_count, headerless_csv_options, read_source
from .hints import keyword_hint
from .ids import check_unique_ids, content_ids, given_ids, row_namer
from .inputs import DataInput, legacy_inputs, parse_inputs
from .label_space import label_space
from .splits import carve_validation, check_validation_size
from .templates import template_fields, template_image_paths

__all__ = ["STANDARD_COLUMNS", "class_names", "load_multimodal"]

#: The columns of a dataset loaded with ``image_column`` / ``text_column`` (no ``inputs``),
#: in this order; datasets with named ``inputs`` start with ``id``, ``label``, the inputs.
STANDARD_COLUMNS: tuple[str, ...] = ("id", "image", "text", "label")
_STAGED = "__ensemble_source_{}__"


def class_names(ds: Any, label_column: str = "label") -> list[str]:
    """Return the ordered label space (``ClassLabel.names``) of a dataset.

    ``ds`` is a ``DatasetDict`` (every split must agree) or a single ``Dataset``; a thin
    wrapper over :meth:`ensemble.labels.LabelSpace.from_dataset`.

    Example:
        >>> from ensemble.data import make_synthetic
        >>> class_names(make_synthetic(n_train=8, n_validation=4, n_test=4))
        ['red-alpha', 'red-beta', 'blue-alpha', 'blue-beta']
    """
    return list(LabelSpace.from_dataset(ds, label_column).names)


def load_multimodal(
    path_or_name: Any,
    *,
    inputs: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    image_column: str | None = "image",
    text_column: str | None = "text",
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    allow_unseen_labels: bool = False,
    verify_images: bool = True,
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    column_names: Sequence[str] | None = None,
    image_path_template: str | None = None,
    validation_size: float | int | None = None,
    split_seed: int = 0,
    **load_kwargs: Any,
) -> Any:
    """Load a dataset as named input columns plus ``id`` and ``label``.

    ``path_or_name`` may be a ``DatasetDict`` (or ``Dataset``, used as split ``"train"``), a
    local csv / tsv / json / jsonl / parquet file, a local directory (an imagefolder with
    ``metadata.jsonl``/``.csv``, a folder of data files, or a ``save_to_disk`` directory), a
    ``datasets`` builder name used with ``data_files`` (``"csv"``, ``"json"``, ...), or a
    Hub dataset name. Files are read with ``datasets.load_dataset(..., **load_kwargs)``. A
    relative path that does not exist but looks like one fails at once (no Hub attempt).

    * ``inputs`` declares the columns experts read, each with a modality: ``{"photo":
      "image", "title": "text", "meta": ["price", "year", "brand"]}``. A tabular input (a
      list of columns, or ``{"numeric": [...], "categorical": [...]}``) becomes ONE struct
      column named after the input. Columns: ``id``, ``label``, the inputs in declared order,
      then the source's other columns. Without ``inputs``, ``image_column`` / ``text_column``
      name the source columns of the inputs ``image`` and ``text`` (renamed to those names;
      either may be ``None`` for a text-only or image-only dataset); columns ``id``,
      ``image``, ``text``, ``label``, then the others.
    * Missing values (None, NaN, an empty csv cell) mark an input as absent for that row:
      image and text values are ``None``; a tabular row is ``None`` when all its fields are
      missing. Blank text is an error (use None).
    * Images may be ``Image`` features, PIL images, bytes or file paths; relative paths are
      resolved against ``image_root`` (default: the dataset directory, else the directory of
      the first data file, else the working directory). Every image of every split is
      decoded once (``verify_images=False`` skips this), so a corrupt file fails here.
    * Labels may be strings (label space = sorted names, or the ``class_names`` order),
      integer ids (names = ``class_names``, or ``"0"``, ``"1"``, ...) or a ``ClassLabel``. A
      label with no ``train`` row, or spelled like another but for case, is a ``LabelError``
      unless ``class_names`` lists it (``allow_unseen_labels=True`` accepts the former).
    * Ids come from ``id_column`` (as strings), else from a hash of every declared input;
      exact duplicates get ``~1``, ``~2``, ... suffixes. Ids must be unique across splits.

    Layout options: ``column_names`` (csv files without a header row),
    ``image_path_template`` (``"images/{split}/{label}/{file}"`` builds each image path from
    the row), ``validation_size`` / ``split_seed`` (carve a stratified validation split out
    of ``train``). See ``docs/data.md``.

    Example:
        >>> from datasets import Dataset
        >>> rows = Dataset.from_dict({"title": ["red", "blue", None], "price": [1, 2.5, None],
        ...                           "kind": ["a", "b", "a"]})
        >>> ds = load_multimodal(rows, inputs={"title": "text", "meta": ["price"]},
        ...                      label_column="kind")
        >>> ds["train"].column_names
        ['id', 'label', 'title', 'meta']
        >>> ds["train"]["meta"][:]
        [{'price': 1.0}, {'price': 2.5}, None]
    """
    from datasets import Dataset, DatasetDict

    legacy = inputs is None
    if legacy:
        declared = legacy_inputs(image_column, text_column)
    else:
        if (image_column, text_column) != ("image", "text"):
            raise ConfigError(
                "pass either inputs={...} or image_column= / text_column=, not both; with "
                "inputs, name each input's column there (e.g. {'photo': {'modality': 'image', "
                "'column': 'path'}})."
            )
        declared = parse_inputs(inputs)
    _check_roles(declared, label_column, id_column, legacy)
    if class_names is not None:
        class_names = list(LabelSpace(class_names).names)
    for name, flag in (("allow_unseen_labels", allow_unseen_labels),
                       ("verify_images", verify_images)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be true or false, got {flag!r}.")
    template_input = _template_input(declared, image_path_template)
    fields = template_fields(image_path_template) if image_path_template is not None else []
    check_validation_size(validation_size, split_seed)

    in_memory = isinstance(path_or_name, (DatasetDict, Dataset))
    if in_memory and (data_files is not None or load_kwargs or column_names is not None):
        given = sorted(load_kwargs) or ["data_files" if data_files is not None else "column_names"]
        raise ConfigError(
            "data_files, column_names and load_dataset options only apply when loading from a "
            f"path or name, not to an in-memory dataset (got {given})."
        )
    if column_names is not None:
        load_kwargs = headerless_csv_options(column_names, path_or_name, data_files,
                                             load_kwargs)
    if isinstance(path_or_name, DatasetDict):
        dsd, base_dir = path_or_name, None
    elif isinstance(path_or_name, Dataset):
        dsd, base_dir = DatasetDict({"train": path_or_name}), None
    else:
        dsd, base_dir = read_source(path_or_name, data_files, load_kwargs)
    if image_root is not None:
        base_dir = Path(image_root).expanduser().resolve()
    if not isinstance(dsd, DatasetDict):
        raise ConfigError(
            f"loading {path_or_name!r} gave a {type(dsd).__name__}, not a DatasetDict; "
            f"streaming datasets are not supported (drop streaming=True)."
        )
    if len(dsd) == 0:
        raise DataError(f"{path_or_name!r} has no splits; it must hold at least one split.")
    if column_names is not None:
        check_column_count(dsd, list(column_names))

    splits = dict(dsd)
    for split, dset in splits.items():
        _check_columns(dset, split, declared, label_column, id_column, legacy)
    if template_input is not None:
        splits = {split: template_image_paths(dset, split, image_path_template, fields,
                                              template_input.columns[0])
                  for split, dset in splits.items()}

    # The source columns move to private names, so that an input may take any name.
    consumed = list(dict.fromkeys(
        [c for i in declared for c in i.columns] + [label_column]
        + ([id_column] if id_column is not None else [])))
    staged = {c: _STAGED.format(n) for n, c in enumerate(consumed)}
    splits = {split: dset.rename_columns(staged) for split, dset in splits.items()}
    given = ({split: given_ids(dset, split, staged[id_column], id_column)
              for split, dset in splits.items()} if id_column is not None else {})
    groups = _group_fields(splits, declared, staged)
    uses = Counter(c for i in declared for c in i.columns)
    for split, dset in splits.items():
        where = row_namer(split, given.get(split))
        for item in declared:
            context = ColumnContext(source=", ".join(item.columns), input_name=item.name,
                                    base_dir=base_dir or Path.cwd(), row_name=where,
                                    fix=_fix(item, legacy), decode=verify_images)
            dset = _build_input(dset, item, staged, uses, groups, split, context)
        splits[split] = dset

    modalities = [(i.name, get_modality(i.modality)) for i in declared]
    ids = given if id_column is not None else content_ids(splits, modalities)
    check_unique_ids(ids, id_column)
    space, codes = label_space(splits, ids, staged[label_column], label_column=label_column,
                               class_names=class_names,
                               allow_unseen_labels=allow_unseen_labels)

    from datasets import ClassLabel, Value

    names = [i.name for i in declared]
    order = ([c for c in STANDARD_COLUMNS if c in ("id", "label", *names)] if legacy
             else ["id", "label", *names])
    out = {}
    for split, dset in splits.items():
        dset = dset.add_column("label", codes[split].tolist(),
                               feature=ClassLabel(names=list(space.names)))
        dset = dset.add_column("id", ids[split], feature=Value("string"))
        extras = [c for c in dset.column_names if c not in order and c not in staged.values()]
        out[split] = dset.select_columns([*order, *extras])
    if validation_size is not None:
        out = carve_validation(out, validation_size, split_seed)
    return DatasetDict(out)


def _check_roles(declared: Sequence[DataInput], label_column: Any, id_column: Any,
                 legacy: bool) -> None:
    for role, column in (("label_column", label_column), ("id_column", id_column)):
        if column is None and role == "id_column":
            continue
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"{role} must be a non-empty column name, got {column!r}; e.g. "
                f"{keyword_hint(role, role.removesuffix('_column'))}."
            )
    if label_column == id_column:
        raise ConfigError(
            f"label_column and id_column are both {label_column!r}; they must be different "
            "columns."
        )
    if legacy and len(declared) == 2 and declared[0].columns == declared[1].columns:
        raise ConfigError(
            f"image_column and text_column must be different columns, got "
            f"{declared[0].columns[0]!r} for both."
        )
    for item in declared:
        if label_column in item.columns:
            what = (f"{item.name}_column" if legacy else f"input {item.name!r}")
            raise ConfigError(
                f"{what} reads {label_column!r}, the label column: an expert would see the "
                "answer. Read another column, or set label_column= to the column of labels."
            )


def _template_input(declared: Sequence[DataInput], template: Any) -> DataInput | None:
    if template is None:
        return None
    images = [i for i in declared if i.modality == "image"]
    if len(images) != 1:
        raise ConfigError(
            f"image_path_template builds the paths of one image input, but there are "
            f"{len(images)} ({[i.name for i in images]}); declare exactly one image input, or "
            "build the paths before loading."
        )
    return images[0]


def _fix(item: DataInput, legacy: bool) -> str:
    """How to point ``item`` at another column, in Python and on the command line."""
    if legacy:
        return f"pass {keyword_hint(f'{item.name}_column')}"
    return (f"change inputs= to name the right column (CLI: --data-option "
            f"'inputs={{{item.name}: {{modality: {item.modality}, column: NAME}}}}')")


def _check_columns(dset: Any, split: str, declared: Sequence[DataInput], label_column: str,
                   id_column: str | None, legacy: bool) -> None:
    """Every declared column exists; no output name would replace an unused column."""
    available = list(dset.column_names)
    roles: list[tuple[str, str, DataInput | None]] = [
        (c, "input", i) for i in declared for c in i.columns]
    roles.append((label_column, "label_column", None))
    if id_column is not None:
        roles.append((id_column, "id_column", None))
    for column, role, item in roles:
        if column in available:
            continue
        close = difflib.get_close_matches(column, available, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        if item is None:
            what, fix = role, f"pass {keyword_hint(role)}"
        elif legacy:
            what, fix = f"{item.name}_column", _fix(item, legacy)
        else:
            what, fix = f"input {item.name!r}", f"{_fix(item, legacy)}, or add the column"
        raise DataError(
            f"column {column!r} ({what}) not found in split {split!r}; available columns: "
            f"{available}.{hint} Fix: {fix}."
        )
    used = {column for column, _, _ in roles}
    for name in ("id", "label", *(i.name for i in declared)):
        if name in available and name not in used:
            fix = (f"pass {keyword_hint(f'{name}_column', name)} to use it"
                   if legacy or name in ("id", "label") else
                   f"rename the input, or make it read that column (inputs={{{name!r}: ...}})")
            raise DataError(
                f"split {split!r} already has a column {name!r} that is not used as {name!r}; "
                f"{fix}, or remove/rename the column first."
            )


def _group_fields(splits: Mapping[str, Any], declared: Sequence[DataInput],
                  staged: Mapping[str, str]) -> dict[str, TabularFields]:
    """The fields of every tabular (group) input, decided over all splits."""
    groups = {}
    for item in declared:
        if item.is_group:
            modality = get_modality(item.modality)
            groups[item.name] = modality.group_fields(
                splits, {c: staged[c] for c in item.columns}, numeric=item.numeric,
                categorical=item.categorical,
                context=ColumnContext(input_name=item.name))
    return groups


def _build_input(dset: Any, item: DataInput, staged: Mapping[str, str], uses: Counter[str],
                 groups: Mapping[str, TabularFields], split: str, context: ColumnContext) -> Any:
    """``dset`` plus the loaded column of one input, prepared and checked."""
    modality = get_modality(item.modality)
    if item.is_group:
        dset = modality.build_column(dset, item.name, groups[item.name], split, context)
    else:
        source = staged[item.columns[0]]
        if uses[item.columns[0]] == 1:
            dset = dset.rename_column(source, item.name)
        else:
            dset = dset.add_column(item.name, dset.with_format("arrow")[source],
                                   feature=dset.features[source])
        dset = modality.prepare_column(dset, item.name, split, context)
    modality.check_column(dset, item.name, split, context)
    return dset
