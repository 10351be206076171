"""The ``ensemble`` command: a thin shell over :mod:`ensemble.pipeline` and the predictor.

    ensemble run recipes/quickstart.yaml                 # every stage, skipping finished ones
    ensemble finetune|logits|fuse|evaluate RECIPE.yaml   # stop after that stage
    ensemble evaluate --bundle runs/quickstart/bundle --data data/pets.csv   # a saved bundle
    ensemble predict runs/quickstart/bundle --input image=cat.png --input text="a cat"  # JSON
    ensemble predict runs/quickstart/bundle --data rows.csv --out predictions.csv  # a file
    ensemble score runs/quickstart/bundle --data rows.parquet --out scores/  # resumable shards

Errors a user can fix print one line on stderr and exit non-zero (see :data:`EXIT_CODES`);
``--quiet`` keeps stderr to errors and stdout to results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .exceptions import (
    ArtifactError,
    CheckpointNotFoundError,
    ConfigError,
    DataError,
    DependencyError,
    EnsembleError,
    ModalityError,
    OutputError,
    UnknownNameError,
)

__all__ = ["EXIT_CODES", "main"]

#: Exit status per error type (first match in order); any other EnsembleError exits 1.
EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: 2,
    UnknownNameError: 2,
    ArtifactError: 3,
    DataError: 4,
    ModalityError: 4,
    CheckpointNotFoundError: 5,
    DependencyError: 5,
    OutputError: 6,
    EnsembleError: 1,
}
INTERRUPTED = 130

_STAGE_COMMANDS = {
    "finetune": "fine-tune each expert on the train split (resumes an interrupted run)",
    "logits": "... then cache every expert's logits on the fit and test splits",
    "fuse": "... then fit every combiner on the fit split's logits",
    "evaluate": "... then write report.md, metrics.json and plots for the test split (or, "
                "with --bundle, score a saved bundle on --data)",
    "run": "every stage, including the predictor bundle (skips up-to-date stages)",
}


def _exit_code(error: BaseException) -> int:
    return next(code for kind, code in EXIT_CODES.items() if isinstance(error, kind))


def _add_recipe_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    parser.add_argument("recipe", nargs="?" if optional else None,
                        help="path of a recipe YAML file (see recipes/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a recipe value, e.g. experts.image.training.epochs=1 "
                             "(repeatable; values are parsed as YAML)")
    parser.add_argument("--run-dir", help="where artifacts go (default: the recipe's run_dir, "
                                          "else runs/<recipe name>)")
    parser.add_argument("--force", action="store_true",
                        help="re-run stages even when their artifacts are up to date")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ensemble`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ensemble",
        description="Late-fusion ensembles: fine-tune one expert per modality, cache their "
                    "logits, fit combiners, evaluate, predict.",
        epilog="Exit codes: 0 ok, 1 other error, 2 bad recipe/arguments, 3 damaged artifact, "
               "4 bad data/inputs, 5 missing checkpoint/dependency, 6 cannot write output, "
               "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ensemble {__version__}")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars or log lines; only results and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in _STAGE_COMMANDS.items():
        sub = commands.add_parser(name, parents=[quiet], help=help_text, description=help_text)
        _add_recipe_arguments(sub, optional=name == "evaluate")
        sub.set_defaults(handler=_stage_handler(name))
        if name == "evaluate":
            _add_bundle_evaluation_arguments(sub)
    predict = commands.add_parser(
        "predict", parents=[quiet], help="predict with a saved bundle (JSON, or a file)",
        description="Predict with a bundle written by `ensemble run` (runs/<name>/bundle). "
                    "Give inputs by column with --input COLUMN=VALUE, once per example (values "
                    "of one column pair up with the other columns' by position; '-' marks a "
                    "missing input); --image/--text are shortcuts when the bundle has exactly "
                    "one image/text column. Or predict every row of a file with --data/--out.")
    predict.add_argument("bundle", help="bundle directory")
    predict.add_argument("--input", dest="inputs", action="append", default=[],
                         metavar="COLUMN=VALUE", help="an input by column name (repeatable)")
    predict.add_argument("--image", action="append", default=[], metavar="PATH",
                         help="shortcut for the bundle's one image column")
    predict.add_argument("--text", action="append", default=[], metavar="TEXT",
                         help="shortcut for the bundle's one text column")
    predict.add_argument("--data", metavar="FILE",
                         help="predict every row of a csv/tsv/json/jsonl/parquet file whose "
                              "columns are the bundle's input columns (relative image and audio "
                              "paths are read from the file's folder); needs --out")
    predict.add_argument("--out", metavar="FILE",
                         help="where --data predictions go (.csv, .jsonl or .parquet): id, "
                              "prediction, confidence and one probability column per class")
    predict.add_argument("--plugin", dest="plugins", action="append", default=[],
                         metavar="MODULE",
                         help="import MODULE first: it registers an expert kind or combiner "
                              "of your own that the bundle uses (repeatable)")
    predict.add_argument("--top-k", type=int, default=0, metavar="K",
                         help="only the K most probable classes per example (default: all)")
    predict.add_argument("--batch-size", type=int, default=None)
    predict.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                         help="torch: BUNDLE is a bundle (default); onnx: BUNDLE is a directory "
                              "written by `ensemble export`, run by ONNX Runtime without torch")
    predict.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                         help="with --backend onnx: the float32 or the int8 graphs (the latter "
                              "need `ensemble export --quantize int8`)")
    predict.set_defaults(handler=_predict)
    _add_score_command(commands, quiet)
    export = commands.add_parser(
        "export", parents=[quiet], help="export a bundle to ONNX (runs without torch)",
        description="Export a bundle (runs/<name>/bundle) to a directory that ONNX Runtime runs "
                    "without torch: one ONNX graph per torch expert (logits and features), its "
                    "preprocessing as data, the combiner as a graph, a sha256 manifest. Predict "
                    "with `ensemble predict DIR --backend onnx`. Needs the export extra.")
    export.add_argument("bundle", help="bundle directory")
    export.add_argument("--out", required=True, metavar="DIR", help="the export directory "
                        "(replaced as a whole, written atomically)")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--quantize", choices=("int8",), default=None,
                        help="also write int8 (dynamic quantisation) graphs of the torch experts")
    export.add_argument("--plugin", dest="plugins", action="append", default=[],
                        metavar="MODULE", help="import a module registering an expert kind or "
                                               "combiner of your own that the bundle uses")
    export.set_defaults(handler=_export)
    return parser


def _add_score_command(commands: Any, quiet: argparse.ArgumentParser) -> None:
    from .scoring import DEFAULT_SHARD_ROWS

    score = commands.add_parser(
        "score", parents=[quiet], help="score a large file into resumable Parquet shards",
        description="Score every row of a csv/tsv/jsonl/parquet file with a bundle: "
                    "predictions, per-expert logits and presence, written as "
                    "DIR/part-NNNNN.parquet shards and DIR/_manifest.json. Streams the file "
                    "(one shard in memory); a re-run of the same command skips finished shards.")
    score.add_argument("bundle", help="bundle directory")
    score.add_argument("--data", required=True, metavar="FILE",
                       help="csv/tsv/jsonl/parquet file whose columns are the bundle's input "
                            "columns (relative image and audio paths are read from its folder)")
    score.add_argument("--out", required=True, metavar="DIR", help="the shard directory")
    score.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, metavar="N",
                       help=f"rows per shard (default {DEFAULT_SHARD_ROWS})")
    score.add_argument("--id-column", default=None, metavar="NAME",
                       help="column of example ids (default: id, else the row number)")
    score.add_argument("--allow-missing", action="append", default=[], metavar="COLUMN",
                       help="score without this bundle input column when the file lacks it "
                            "(repeatable; by default a missing column is an error)")
    score.add_argument("--overwrite", action="store_true",
                       help="delete the shards of an earlier, different run in --out first")
    score.add_argument("--plugin", dest="plugins", action="append", default=[],
                       metavar="MODULE", help="import a module registering an expert kind or "
                                              "combiner of your own that the bundle uses")
    score.add_argument("--batch-size", type=int, default=None)
    score.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    from .manifests import require_bundle_directory
    from .scoring import check_score_directory, score_file

    require_bundle_directory(args.bundle)
    if not os.path.isfile(args.data):
        raise DataError(f"--data {args.data!r} does not exist; check the path.")
    # Refusals (another run in --out, a bad --shard-rows) come before any model loads.
    check_score_directory(args.out, args.bundle, args.data, shard_rows=args.shard_rows,
                          id_column=args.id_column, overwrite=args.overwrite)
    if args.plugins:
        from .recipe import import_plugins

        import_plugins(args.plugins)
    predictor = _load_predictor(args.bundle, args)
    result = score_file(predictor, args.bundle, args.data, args.out,
                        shard_rows=args.shard_rows, id_column=args.id_column,
                        allow_missing=args.allow_missing, progress=not args.quiet)
    if not args.quiet and result.main_process:
        mine = f" by process 0 of {result.processes}" if result.processes > 1 else ""
        print(f"{result.rows} rows in {len(result.shards)} shards: {args.out} ({result.scored_rows}"
              f" scored now{mine}, {result.skipped_shards} shards kept from an earlier run"
              f"{mine})", file=sys.stderr)
    return 0


def _add_bundle_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("ensemble evaluate RECIPE [--set KEY=VALUE] [--run-dir DIR] [--force] [-q]\n"
                    "       ensemble evaluate --bundle DIR --data PATH_OR_NAME [--split SPLIT] "
                    "[--out DIR] [column options] [-q]")
    group = parser.add_argument_group(
        "evaluate a saved bundle (instead of a RECIPE)",
        "Score a bundle from `ensemble run` on a labelled dataset read by "
        "ensemble.data.load_multimodal; writes report.md, metrics.json and plots/.")
    group.add_argument("--bundle", metavar="DIR", help="bundle directory (runs/<name>/bundle)")
    group.add_argument("--data", metavar="PATH_OR_NAME",
                       help="dataset: a csv/json/parquet file, a folder, a saved dataset or a "
                            "Hub name")
    group.add_argument("--split", default=None,
                       help="split to score (default: test, or the only split of a single "
                            "file)")
    group.add_argument("--out", metavar="DIR",
                       help="report folder (default: <bundle>-report-<split> next to the "
                            "bundle); replaced as a whole")
    for role in ("image", "text", "label", "id"):
        default = "none: ids from a content hash" if role == "id" else role
        group.add_argument(f"--{role}-column", metavar="NAME",
                           help=f"column holding the {role} (default: {default})")
    group.add_argument("--image-root", metavar="DIR",
                       help="folder that relative image paths are resolved against")
    group.add_argument("--data-option", dest="data_options", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="another load_multimodal option, e.g. data_files={test: t.csv} or "
                            "column_names=[file,text,label] (repeatable; values are YAML)")
    group.add_argument("--bootstrap", type=int, metavar="N",
                       help="bootstrap resamples for the intervals (default: the bundle "
                            "recipe's, else 1000)")
    group.add_argument("--batch-size", type=int, default=None)


def _evaluate_bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    _one_process("ensemble evaluate --bundle")
    from .data import load_multimodal
    from .report import leaderboard_table, write_predictor_report

    if args.recipe is not None or args.overrides or args.run_dir or args.force:
        raise ConfigError("give either a RECIPE (with --set/--run-dir/--force) or --bundle "
                          "DIR --data PATH, not both.")
    if not args.data:
        raise ConfigError("--bundle needs --data PATH_OR_NAME: the labelled dataset to score.")
    if args.bootstrap is not None and args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}.")
    options = _key_values(args.data_options, "--data-option")
    for role in ("image", "text", "label", "id"):
        value = getattr(args, f"{role}_column")
        if value is not None:
            options[f"{role}_column"] = value
    if args.image_root is not None:
        options["image_root"] = args.image_root
    # The data first (a bad file fails in seconds, before any model loads), read with the
    # bundle's label space so a test set that holds only some of the classes still loads.
    options.setdefault("class_names", _bundle_class_names(args.bundle))
    dataset = load_multimodal(args.data, **options)
    predictor = _load_predictor(args.bundle, args)
    if args.split is None:
        args.split = "test" if "test" in dataset or len(dataset) != 1 else next(iter(dataset))
    if args.split not in dataset:
        raise DataError(f"{args.data!r} has no split {args.split!r} (splits: "
                        f"{sorted(dataset)!r}); pass --split.")
    bundle = Path(args.bundle).resolve()
    out = Path(args.out) if args.out else bundle.parent / f"{bundle.name}-report-{args.split}"
    settings = {"bootstrap": args.bootstrap} if args.bootstrap is not None else {}
    result = write_predictor_report(
        out, predictor, dataset[args.split], settings=settings,
        title=f"{bundle.name} on {args.data}: {args.split} split")
    print(leaderboard_table(result))
    if not args.quiet:
        print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0


def _bundle_class_names(bundle: str) -> list[str]:
    """The class names a bundle predicts (read without loading any model)."""
    from ._io import read_json
    from .manifests import require_bundle_directory

    path = require_bundle_directory(bundle) / "label_space.json"
    if not path.is_file():
        raise ArtifactError(f"{bundle}: label_space.json is missing; the bundle is incomplete.")
    names = read_json(path).get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArtifactError(f"{path} holds no class list; re-save the bundle.")
    return names


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a mapping; values are parsed as YAML."""
    import yaml

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE (e.g. data_files={{test: t.csv}}), "
                              f"got {pair!r}.")
        try:
            result[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{flag} {pair!r}: the value is not valid YAML ({err}).") from err
    return result


def _load_predictor(bundle: str, args: argparse.Namespace) -> Any:
    from .predictor import FusionPredictor

    if getattr(args, "backend", "torch") == "onnx":
        predictor = FusionPredictor.load(bundle, backend="onnxruntime", precision=args.precision)
    else:
        if getattr(args, "precision", "fp32") != "fp32":
            raise ConfigError("--precision int8 is for --backend onnx (an exported directory).")
        predictor = FusionPredictor.load(bundle, progress=not args.quiet)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
        predictor.batch_size = args.batch_size
    return predictor


def _stage_handler(command: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from .pipeline import Pipeline
        from .recipe import load_recipe

        if command == "evaluate" and args.bundle is not None:
            return _evaluate_bundle(args)
        if args.recipe is None:  # only `evaluate` makes RECIPE optional
            raise ConfigError("give a RECIPE, or --bundle DIR --data PATH to score a saved "
                              "bundle.")
        recipe = load_recipe(args.recipe, args.overrides)
        pipeline = Pipeline(recipe, run_dir=args.run_dir, force=args.force, quiet=args.quiet)
        result = pipeline.run(until="bundle" if command == "run" else command)
        if not result.main_process:
            return 0  # one of several processes: the main one reports
        if result.leaderboard:
            print(result.leaderboard)
        if not args.quiet:
            for label, path in (("report", result.report), ("bundle", result.bundle)):
                if path is not None:
                    print(f"{label}: {path}", file=sys.stderr)
        return 0

    return handler


def _input_columns(args: argparse.Namespace) -> dict[str, list[str | None]]:
    """``--input COLUMN=VALUE`` (and the shortcuts) as column -> values; checked before any
    model is loaded."""
    columns: dict[str, list[str | None]] = {}
    for pair in args.inputs:
        column, sep, value = pair.partition("=")
        if not sep or not column.strip():
            raise ConfigError(f"--input expects COLUMN=VALUE (e.g. --input title='a red apple'), "
                              f"got {pair!r}.")
        columns.setdefault(column.strip(), []).append(None if value == "-" else value)
    sizes = {column: len(values) for column, values in columns.items()}
    for flag, values in (("--image", args.image), ("--text", args.text)):
        if values:
            sizes[flag] = len(values)
    if len(set(sizes.values())) > 1:
        raise DataError(
            f"every input needs one value per example (use '-' for a missing one); got {sizes}."
        )
    return columns


def _check_predict_arguments(args: argparse.Namespace) -> dict[str, list[str | None]]:
    columns = _input_columns(args)
    given = bool(columns or args.image or args.text)
    if args.data is not None:
        if given:
            raise ConfigError("give either --data FILE (with --out) or --input/--image/--text "
                              "values, not both.")
        if not args.out:
            raise ConfigError("--data needs --out FILE for the predictions (.csv, .jsonl or "
                              ".parquet).")
        if not os.path.isfile(args.data):
            raise DataError(f"--data {args.data!r} does not exist; check the path.")
        if os.path.splitext(args.out)[1].lower() not in (".csv", ".jsonl", ".parquet"):
            raise ConfigError(f"--out {args.out!r} must end in .csv, .jsonl or .parquet.")
    elif not given:
        raise DataError("give at least one --input COLUMN=VALUE (or --image PATH / --text "
                        "TEXT), or --data FILE --out FILE.")
    if args.out and args.data is None:
        raise ConfigError("--out is for --data predictions; drop it or add --data FILE.")
    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {args.top_k}.")
    for path in args.image:
        if path != "-" and not os.path.isfile(path):
            raise DataError(f"--image {path!r} does not exist; check the path.")
    from .manifests import require_bundle_directory

    require_bundle_directory(args.bundle, what="export" if args.backend == "onnx" else "bundle")
    return columns


def _predict(args: argparse.Namespace) -> int:
    columns = _check_predict_arguments(args)
    if args.plugins:
        from .recipe import import_plugins

        import_plugins(args.plugins)
    predictor = _load_predictor(args.bundle, args)
    if args.data is not None:
        return _predict_file(predictor, args)
    shortcuts = {"images": [None if v == "-" else v for v in args.image] or None,
                 "texts": [None if v == "-" else v for v in args.text] or None}
    for column, modality in predictor.columns.items():
        if modality in ("tabular", "scores") and column in columns:  # JSON per value
            columns[column] = [_json_value(column, v) for v in columns[column]]
        if modality == "image":
            for path in columns.get(column, []):
                if path is not None and not os.path.isfile(path):
                    raise DataError(f"--input {column}={path!r}: no such image file.")
    rows = predictor.explain(columns or None, **shortcuts)
    given = dict(columns)
    for flag, key in (("image", "images"), ("text", "texts")):
        if shortcuts[key] is not None:
            given[flag] = shortcuts[key]
    for i, row in enumerate(rows):
        row.pop("id", None)
        row["input"] = {column: values[i] for column, values in given.items()}
        if args.top_k > 0:
            _keep_top(row, args.top_k)
    print(json.dumps({"predictions": rows}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .manifests import require_bundle_directory
    from .predictor import FusionPredictor

    bundle, out = require_bundle_directory(args.bundle).resolve(), Path(args.out).resolve()
    if out == bundle or out.is_relative_to(bundle) or bundle.is_relative_to(out):
        raise ConfigError(f"--out {args.out!r} overlaps the bundle {args.bundle!r}; give a "
                          "directory outside it (e.g. runs/<recipe>/onnx).")
    if args.plugins:
        from .recipe import import_plugins

        import_plugins(args.plugins)
    predictor = FusionPredictor.load(args.bundle)
    out = predictor.export(args.out, format=args.format, quantize=args.quantize == "int8")
    if not args.quiet:
        print(f"exported {args.bundle} to {out} (predict with: ensemble predict {out} "
              "--backend onnx)", file=sys.stderr)
    return 0


def _json_value(column: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise DataError(
            f"--input {column}={value!r}: this column takes JSON (e.g. "
            f"--input {column}='{{\"price\": 3.5, \"brand\": \"acme\"}}'), or use --data "
            f"FILE with one column per field ({err.msg})."
        ) from None


def _predict_file(predictor: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .prediction_files import predict_file

    count = predict_file(predictor, Path(args.data), Path(args.out))
    if not args.quiet:
        print(f"{count} predictions: {args.out}", file=sys.stderr)
    return 0


def _keep_top(row: dict[str, Any], k: int) -> None:
    for holder in (row, *row["experts"].values()):
        if "probabilities" in holder:
            ranked = sorted(holder["probabilities"].items(), key=lambda kv: -kv[1])[:k]
            holder["probabilities"] = dict(ranked)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ensemble`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "quiet", False):
        _quiet_libraries()
    try:
        if args.command not in _SHARED_COMMANDS:
            _one_process(f"ensemble {args.command}")
        return int(args.handler(args))
    except EnsembleError as error:
        print(f"ensemble {args.command}: error: {error}", file=sys.stderr)
        return _exit_code(error)
    except KeyboardInterrupt:
        print(f"ensemble {args.command}: interrupted; run the same command again to resume.",
              file=sys.stderr)
        return INTERRUPTED


#: The commands that share their work between the processes of torchrun / accelerate
#: launch (docs/scaling.md); the others refuse to run on several.
_SHARED_COMMANDS = frozenset({"run", "finetune", "logits", "fuse", "evaluate", "bundle",
                              "score"})


def _one_process(what: str) -> None:
    from .launch import require_single_process

    require_single_process(what, "Run it as one process; `ensemble run` (and its stages) and "
                                 "`ensemble score` are the commands that share their work "
                                 "between processes (docs/scaling.md).")


def _quiet_libraries() -> None:
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "timm", "datasets", "accelerate", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "datasets" in sys.modules:  # already imported (e.g. main() called in-process)
        sys.modules["datasets"].disable_progress_bars()


if __name__ == "__main__":
    sys.exit(main())
