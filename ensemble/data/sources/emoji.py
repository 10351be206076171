"""``load_emoji``: the real emoji dataset built from ``emoji-datasource-google@16.0.0``.

One row per emoji (category ``Component`` dropped), labelled with its Unicode category (or,
for a harder label space, its subcategory), with four inputs: ``image`` (the Google Noto
image), ``text`` (the name), ``keywords`` (short names and emoticons) and ``meta`` (a tabular
group of code-point facts). Nothing derived from the category, subcategory or sort order
enters those inputs. See :func:`load_emoji`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..._io import atomic_directory, read_json, sha256_file, write_json
from ...exceptions import ArtifactError, ConfigError, DataError, DependencyError

__all__ = ["EMOJI_LABELS", "EMOJI_META_FIELDS", "EMOJI_PACKAGE", "EMOJI_VERSION", "build_emoji",
           "cache_root", "load_emoji"]

logger = logging.getLogger(__name__)

EMOJI_PACKAGE = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"
_EMOJI_NATIVE_SIZE = 64
# Bump when the rows, columns or splits built by load_emoji change: invalidates old caches.
# 2: inputs ``keywords`` and ``meta`` added, ``subcategory`` dropped.
# 3: ``subcategory`` kept in the cache (for ``label="subcategory"``); splits unchanged.
_EMOJI_BUILDER_VERSION = 3
#: What ``load_emoji(label=...)`` can label the rows with.
EMOJI_LABELS: tuple[str, ...] = ("category", "subcategory")
_META_FILE = "ensemble_dataset.json"
#: The numeric fields of the emoji ``meta`` input (none derived from category or order).
EMOJI_META_FIELDS: tuple[str, ...] = (
    "code_points", "first_code_point", "skin_tones", "added_in", "non_qualified",
)


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``$ENSEMBLE_CACHE``, else ``platformdirs.user_cache_dir('ensemble')``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ENSEMBLE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ensemble"))


def load_emoji(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 64,
    tarball: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    label: Literal["category", "subcategory"] = "category",
    min_class_rows: int = 5,
) -> Any:
    """Build (once) and load the emoji dataset: 9 emoji categories (or 89 subcategories),
    four inputs.

    Source: the npm package ``emoji-datasource-google@16.0.0`` (emoji data MIT, Google Noto
    emoji images Apache-2.0), fetched with ``npm pack`` unless ``tarball`` points at an already
    downloaded ``emoji-datasource-google-16.0.0.tgz``. One row per emoji with a Google image,
    category ``Component`` dropped:

    * ``image`` – ``img/google/64/<image>`` alpha-composited on white, RGB, resized to
      ``image_size`` (LANCZOS) when it is not 64;
    * ``text`` – the lower-cased Unicode ``name`` (fallback: first short name, ``_`` -> space);
    * ``keywords`` – the short names (``_`` -> space) and the emoticons (``texts``, ``text``),
      space-separated (e.g. ``"smile :) C: :D"``);
    * ``meta`` – a tabular input (struct of float64): ``code_points`` (how many code points
      ``unified`` has), ``first_code_point`` (the first one as an integer), ``skin_tones``
      (1 if it has skin-tone variations), ``added_in`` (the Unicode/emoji version, e.g.
      ``6.0``), ``non_qualified`` (1 if a non-qualified form exists);
    * ``label`` – the ``category``; class names sorted alphabetically;
    * ``id`` and ``unified`` – the code point string (e.g. ``"1F600"``); ``short_names`` is
      kept as metadata. Nothing derived from ``category``, ``subcategory`` or ``sort_order``
      is in an input column (``subcategory`` is not kept at all).

    ``label="subcategory"`` gives the harder label space: ``label`` is the Unicode
    subcategory (``"face-smiling"``, ``"animal-mammal"``, ...), keeping the subcategories with
    at least ``min_class_rows`` emoji (89 of 98 at the default 5, 1,883 rows) and at least one
    training row; the splits are the category splits above, less the dropped rows. A
    ``category`` column then holds the coarse group as text: the input of a coarse text
    expert (a "product type" that narrows the fine label without naming it).

    Splits: rows sorted by ``sort_order``, then stratified ``train_test_split`` with
    ``random_state=0`` into 60% train / 20% validation / 20% test; each split is kept in
    ``sort_order``. The built dataset is cached under ``cache_dir`` (default
    ``$ENSEMBLE_CACHE`` or the user cache dir) in ``datasets/emoji-google-16.0.0-<size>px``;
    later calls load it from there. ``overwrite=True`` rebuilds it.

    Example:
        >>> ds = load_emoji()  # doctest: +SKIP
        >>> ds["train"].num_rows, ds["train"].features["label"].names[:2]  # doctest: +SKIP
        (1143, ['Activities', 'Animals & Nature'])
        >>> ds["train"][0]["meta"]  # doctest: +SKIP
        {'code_points': 1.0, 'first_code_point': 128512.0, 'skin_tones': 0.0, ...}
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}.")
    if label not in EMOJI_LABELS:
        raise ConfigError(f"label is {label!r}; choose one of {EMOJI_LABELS}.")
    if isinstance(min_class_rows, bool) or not isinstance(min_class_rows, int) \
            or min_class_rows < 1:
        raise ConfigError(f"min_class_rows must be an integer >= 1, got {min_class_rows!r}.")
    return _labelled(_load_built(cache_dir, image_size, tarball, overwrite), label,
                     min_class_rows)


def _load_built(cache_dir: str | os.PathLike[str] | None, image_size: int,
                tarball: str | os.PathLike[str] | None, overwrite: bool) -> Any:
    """The built dataset (category labels, ``subcategory`` column), from the cache or new."""
    from datasets import DatasetDict

    target = cache_root(cache_dir) / "datasets" / f"emoji-google-{EMOJI_VERSION}-{image_size}px"
    if not overwrite and _emoji_cache_valid(target, image_size):
        try:
            return DatasetDict.load_from_disk(str(target))
        except Exception as err:  # a damaged cache is rebuilt, not fatal
            logger.warning("Rebuilding the emoji dataset cache at %s (%s).", target, err)

    if tarball is not None:
        tarball_path = Path(tarball).expanduser()
        if not tarball_path.is_file():
            raise DataError(
                f"tarball {os.fspath(tarball)!r} does not exist; download it with "
                f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}` or pass tarball=None to let "
                f"ensemble run npm."
            )
        dsd, info = build_emoji(tarball_path, image_size)
    else:
        with tempfile.TemporaryDirectory(prefix="ensemble-emoji-") as tmp:
            dsd, info = build_emoji(_npm_pack(Path(tmp)), image_size)

    with atomic_directory(target) as tmp_dir:
        dsd.save_to_disk(str(tmp_dir))
        (tmp_dir / "LICENSE-emoji-datasource.txt").write_text(info.pop("license"), "utf-8")
        write_json(tmp_dir / _META_FILE, info)
    return DatasetDict.load_from_disk(str(target))


def _emoji_cache_valid(target: Path, image_size: int) -> bool:
    if not (target / "dataset_dict.json").is_file():
        return False
    try:
        meta = read_json(target / _META_FILE)
    except ArtifactError:
        return False
    return (
        meta.get("builder") == "emoji"
        and meta.get("builder_version") == _EMOJI_BUILDER_VERSION
        and meta.get("version") == EMOJI_VERSION
        and meta.get("image_size") == image_size
    )


def _labelled(dsd: Any, label: str, min_class_rows: int) -> Any:
    """``dsd`` labelled by ``label``: as built (less ``subcategory``) for categories; for
    subcategories, the kept rows relabelled and the category as a ``category`` text column."""
    if label == "category":
        return dsd.remove_columns("subcategory")
    from collections import Counter

    from datasets import ClassLabel, DatasetDict, Value

    categories = dsd["train"].features["label"].names
    total = Counter(s for split in dsd.values() for s in split["subcategory"])
    in_train = set(dsd["train"]["subcategory"])
    kept = sorted(s for s, n in total.items() if n >= min_class_rows and s in in_train)
    if len(kept) < 2:
        raise DataError(
            f"only {len(kept)} subcategories have {min_class_rows} or more emoji; lower "
            "min_class_rows."
        )
    index = {name: i for i, name in enumerate(kept)}

    def relabel(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        return {"label": [index[s] for s in batch["subcategory"]],
                "category": [categories[c] for c in batch["label"]]}

    splits = {}
    for split, data in dsd.items():
        data = data.filter(lambda s: s in index, input_columns="subcategory",
                           keep_in_memory=True)
        features = data.features.copy()
        features["label"] = ClassLabel(names=kept)
        features["category"] = Value("string")
        splits[split] = data.map(relabel, batched=True, features=features,
                                 keep_in_memory=True).remove_columns("subcategory")
    return DatasetDict(splits)


def _npm_pack(workdir: Path) -> Path:
    """Download ``emoji-datasource-google-16.0.0.tgz`` into ``workdir`` with ``npm pack``."""
    spec = f"{EMOJI_PACKAGE}@{EMOJI_VERSION}"
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError(
            f"`npm` was not found on PATH; it is needed to download {spec}. Install Node.js "
            f"(which ships npm), or download the tarball elsewhere with `npm pack {spec}` and "
            f"pass load_emoji(tarball='emoji-datasource-google-{EMOJI_VERSION}.tgz')."
        )
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--ignore-scripts", "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DependencyError(
            f"`npm pack {spec}` failed ({err}); pass tarball=<path to a downloaded "
            f"emoji-datasource-google-{EMOJI_VERSION}.tgz> instead."
        ) from err
    found = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout or "").strip()[-600:]
        raise DependencyError(
            f"`npm pack {spec}` exited with {proc.returncode}: {tail}\nCheck access to the npm "
            f"registry, or pass tarball=<path to a downloaded emoji-datasource-google-"
            f"{EMOJI_VERSION}.tgz>."
        )
    return found[0]


_EMOJI_JSON = "package/emoji.json"
_EMOJI_LICENSE = "package/LICENSE"
_EMOJI_PACKAGE_JSON = "package/package.json"
_EMOJI_IMG_PREFIX = f"package/img/google/{_EMOJI_NATIVE_SIZE}/"
_MAX_JSON_BYTES = 64 << 20
_MAX_PNG_BYTES = 4 << 20


def _read_emoji_tarball(path: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Read the few members we need into memory.

    Nothing is extracted to disk, so member names can never escape a directory (no path
    traversal); links, devices and oversized members are ignored or rejected.
    """
    files: dict[str, bytes] = {}
    images: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                wanted_file = name in (_EMOJI_JSON, _EMOJI_LICENSE, _EMOJI_PACKAGE_JSON)
                wanted_image = (
                    name.startswith(_EMOJI_IMG_PREFIX)
                    and name.endswith(".png")
                    and "/" not in name[len(_EMOJI_IMG_PREFIX):]
                )
                if not (wanted_file or wanted_image) or not member.isfile():
                    continue
                limit = _MAX_JSON_BYTES if wanted_file else _MAX_PNG_BYTES
                if member.size > limit:
                    raise DataError(
                        f"{path}: member {name!r} is {member.size} bytes (limit {limit}); this "
                        f"is not the {EMOJI_PACKAGE} package."
                    )
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                if wanted_file:
                    files[name] = data
                else:
                    images[name[len(_EMOJI_IMG_PREFIX):]] = data
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(
            f"{path} is not a readable .tgz ({err}); download it again with "
            f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
        ) from err
    if _EMOJI_JSON not in files:
        raise DataError(
            f"{path} has no {_EMOJI_JSON}; pass the tarball made by "
            f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
        )
    return files, images


def _emoji_rgb(png: bytes, image_size: int) -> bytes:
    """Composite an (RGBA) emoji PNG on white, resize, and return RGB PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def _emoji_text(entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip().lower()
    for short in [*(entry.get("short_names") or []), entry.get("short_name")]:
        if isinstance(short, str) and short.strip():
            return short.strip().replace("_", " ").lower()
    raise DataError(
        f"Emoji {entry.get('unified')!r} has neither a name nor a short name; the tarball is "
        f"damaged: download it again with `npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
    )


def _emoji_keywords(entry: Mapping[str, Any]) -> str | None:
    """Short names (``_`` -> space) and emoticons, space-separated; None when there are none."""
    words = [str(s).replace("_", " ") for s in entry.get("short_names") or [] if s]
    words += [str(t) for t in entry.get("texts") or [] if t]
    if entry.get("text"):
        words.append(str(entry["text"]))
    words = list(dict.fromkeys(w.strip() for w in words if w.strip()))
    return " ".join(words) or None


def _version(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _emoji_meta(entry: Mapping[str, Any]) -> dict[str, float | None]:
    """The ``meta`` input: code-point facts only (see :data:`EMOJI_META_FIELDS`)."""
    points = str(entry["unified"]).split("-")
    try:
        first: float | None = float(int(points[0], 16))
    except ValueError:
        first = None
    return {
        "code_points": float(len(points)),
        "first_code_point": first,
        "skin_tones": float(bool(entry.get("skin_variations"))),
        "added_in": _version(entry.get("added_in")),
        "non_qualified": float(bool(entry.get("non_qualified"))),
    }


def build_emoji(tarball: Path, image_size: int) -> tuple[Any, dict[str, Any]]:
    """The emoji ``DatasetDict`` and its build record, from the npm tarball at ``tarball``.

    Example:
        >>> tgz = Path("emoji-datasource-google-16.0.0.tgz")
        >>> dsd, info = build_emoji(tgz, 64)  # doctest: +SKIP
        >>> info["num_rows"]  # doctest: +SKIP
        {'train': 1143, 'validation': 381, 'test': 382}
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
    from sklearn.model_selection import train_test_split

    files, images = _read_emoji_tarball(tarball)
    if _EMOJI_PACKAGE_JSON in files:
        try:
            package = json.loads(files[_EMOJI_PACKAGE_JSON])
        except json.JSONDecodeError as err:
            raise DataError(f"{tarball}: package/package.json is not JSON ({err}).") from err
        got = (package.get("name"), package.get("version"))
        if got != (EMOJI_PACKAGE, EMOJI_VERSION):
            raise DataError(
                f"{tarball} holds {got[0]}@{got[1]}, expected {EMOJI_PACKAGE}@{EMOJI_VERSION}; "
                f"download the right one with `npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
            )
    try:
        entries = json.loads(files[_EMOJI_JSON])
    except json.JSONDecodeError as err:
        raise DataError(f"{tarball}: {_EMOJI_JSON} is not valid JSON ({err}).") from err
    if not isinstance(entries, list):
        raise DataError(f"{tarball}: {_EMOJI_JSON} must be a JSON list of emoji.")

    rows = [
        e for e in entries
        if isinstance(e, dict)
        and e.get("category") != "Component"
        and e.get("has_img_google") is True
        and isinstance(e.get("image"), str)
        and e["image"] in images
    ]
    rows.sort(key=lambda e: (e.get("sort_order", 0), e.get("unified", "")))
    seen: set[str] = set()
    for entry in rows:
        unified = entry.get("unified")
        if not isinstance(unified, str) or not unified or unified in seen:
            raise DataError(
                f"{tarball}: emoji id (unified) {unified!r} is empty or repeated; the tarball is "
                f"damaged or not {EMOJI_PACKAGE}@{EMOJI_VERSION}."
            )
        seen.add(unified)
    names = sorted({str(e["category"]) for e in rows})
    if len(rows) < 5 * max(len(names), 1):
        raise DataError(
            f"{tarball}: only {len(rows)} usable emoji in {len(names)} categories; too few for "
            f"stratified 60/20/20 splits."
        )
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[str(e["category"])] for e in rows])
    order = np.arange(len(rows))
    train_idx, temp_idx = train_test_split(order, test_size=0.4, stratify=y, random_state=0)
    val_idx, test_idx = train_test_split(
        temp_idx, test_size=0.5, stratify=y[temp_idx], random_state=0
    )

    features = Features({
        "id": Value("string"),
        "image": Image(),
        "text": Value("string"),
        "label": ClassLabel(names=names),
        "keywords": Value("string"),
        "meta": {field: Value("float64") for field in EMOJI_META_FIELDS},
        "short_names": _string_list_feature(),
        "unified": Value("string"),
        "subcategory": Value("string"),
    })
    splits = {}
    for split, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx)):
        chosen = [rows[i] for i in sorted(idx)]
        splits[split] = Dataset.from_dict(
            {
                "id": [e["unified"] for e in chosen],
                "image": [
                    {"bytes": _emoji_rgb(images[e["image"]], image_size), "path": None}
                    for e in chosen
                ],
                "text": [_emoji_text(e) for e in chosen],
                "label": [index[str(e["category"])] for e in chosen],
                "keywords": [_emoji_keywords(e) for e in chosen],
                "meta": [_emoji_meta(e) for e in chosen],
                "short_names": [[str(s) for s in e.get("short_names") or []] for e in chosen],
                "unified": [e["unified"] for e in chosen],
                "subcategory": [str(e.get("subcategory") or "") for e in chosen],
            },
            features=features,
        )
    info = {
        "builder": "emoji",
        "builder_version": _EMOJI_BUILDER_VERSION,
        "package": EMOJI_PACKAGE,
        "version": EMOJI_VERSION,
        "image_size": image_size,
        "tarball_sha256": sha256_file(tarball),
        "class_names": names,
        "inputs": {"image": "image", "text": "text", "keywords": "text",
                   "meta": list(EMOJI_META_FIELDS)},
        "num_rows": {split: d.num_rows for split, d in splits.items()},
        "licenses": {
            "emoji data (emoji.json)": "MIT (c) Cal Henderson, iamcal/emoji-data",
            "images (Google Noto Emoji)": "Apache-2.0",
        },
        "license": files.get(_EMOJI_LICENSE, b"").decode("utf-8", errors="replace"),
    }
    return DatasetDict(splits), info


def _string_list_feature() -> Any:
    import datasets

    list_type = getattr(datasets, "List", None)
    if list_type is not None:
        return list_type(datasets.Value("string"))
    return datasets.Sequence(datasets.Value("string"))  # datasets < 4

