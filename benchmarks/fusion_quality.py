"""Fusion quality: every combiner vs simple baselines on held-out logits, per dataset.

Usage::

    python benchmarks/fusion_quality.py                          # every available dataset
    python benchmarks/fusion_quality.py --datasets emoji complementary
    python benchmarks/fusion_quality.py --datasets emoji --run-dir PATH   # one finished run
    python benchmarks/fusion_quality.py --quick                  # small simulated logits (tests)

Datasets (``--datasets``; each gives fit logits + labels and test logits + labels):

- ``emoji`` – a finished quickstart run (``--run-dir``, default ``runs/quickstart``): fitted
  on its out-of-fold logits (``logits/out_of_fold``) when the run was cross-fitted, else
  on ``logits/validation``; scored on ``logits/test``. Skipped, with the reason printed,
  when the directory is absent.
- ``emoji_few_rows`` – the same run's fit logits subsampled to ``k`` rows per class
  (stratified, seeded) for each ``k`` of ``--few-rows-k`` (default 2, 4, 8), scored on the
  same test logits: one table each, ``emoji_k2``, ``emoji_k4``, ... (the few-rows regime,
  where plain averaging should be hard to beat).
- ``synthetic`` – a run of ``recipes/synthetic.yaml`` (``--synthetic-run-dir``, default
  ``runs/synthetic``; when its logits are absent the benchmark first runs ``ensemble run
  recipes/synthetic.yaml --run-dir DIR``, under a minute). Not cross-fitted: fitted on
  ``logits/validation``.
- ``emoji_fine`` – coarse text, fine labels: the 89 emoji subcategories
  (``load_emoji(label="subcategory")``) with two experts, the ``image`` expert of a
  ``benchmarks/finetune_emoji.py --label subcategory`` run (``--fine-run-dir``, default
  ``runs/finetune_emoji_subcategory``; trained on the train split) and a ``category``
  expert that reads only the coarse group (the ``sklearn`` kind, LogisticRegression on the
  category as a one-field tabular input, fitted on the train split): it narrows the label to
  the category's subcategories without naming one, like a product type next to a photo of
  the variety. Fitted on the validation split (about 4 rows per class), scored on test.
- ``complementary`` – :func:`ensemble.simulated_logits.complementary_logits`: three
  experts, each sharp on its own block of 12 classes, with hard examples and 20% of the rows
  missing one expert (fit set: seed 0, test set: seed 1, ``--complementary-rows`` each).

``--quick`` (the test suite) replaces them with two small simulated datasets: ``quick``
(two experts, every row complete) and ``quick_complementary`` (``complementary_logits``,
300 rows), and shortens gating and stacking (``QUICK_PARAMS``).

Models: every registered combiner (``list_combiners()``, default hyper-parameters) and
three baselines:

- **best single expert** – the expert with the highest accuracy on the fit logits (ties:
  lower NLL); on rows where it is absent, the next expert in that ranking that is present;
- **probability averaging** – the unweighted mean of the present experts' softmax outputs;
- **scikit-learn stacking** – ``LogisticRegression`` (multinomial) on the concatenated
  per-expert log-probabilities (an absent expert: the uniform distribution). That is exactly
  what the final estimator of ``sklearn.ensemble.StackingClassifier(stack_method=
  "predict_proba")`` sees; the logits are precomputed on held-out data, so the base
  estimators' cross-validated predictions are replaced by the held-out fit predictions.

Two tables per dataset:

1. **Test set**: accuracy, macro-F1, NLL and ECE with bootstrap 95% intervals from
   :func:`ensemble.report.score_models` (the same resamples for every model), the oracle
   ("any expert right") accuracy, and ``gap_closed``: the share of the gap from the best
   single expert to the oracle that a model closes, ``(acc - best_expert_acc) / (oracle_acc
   - best_expert_acc)`` (``null`` when the oracle equals the best expert).
2. **Availability patterns**: for every non-empty set of experts, the test rows where all of
   them are present, masked down to exactly that set (so "image only" is what a model does
   when the text is missing); for a dataset whose test rows already miss experts, also the
   rows as they are ("as is"). Per pattern: each model's accuracy, the *best expert
   present* (the expert of the pattern with the highest accuracy on those rows; "as is":
   per row the first present expert in the ranking by test accuracy on the rows where each
   is present), and each model's paired accuracy difference against it with its bootstrap
   95% interval, wins, losses and McNemar p (:func:`ensemble.report.versus_best_expert`).
   A model whose whole interval lies below zero is *significantly below* the best expert
   present (marked ▼ in the Markdown).

Writes ``benchmarks/results/fusion_quality.json`` (atomically; one section per dataset
under ``datasets``, skipped datasets with their reason under ``skipped``) and prints the
Markdown tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import itertools
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from ensemble._io import library_versions, write_json
from ensemble.combiners import create_combiner, list_combiners
from ensemble.logits import LogitSet
from ensemble.metrics import oracle_hits
from ensemble.pipeline import OUT_OF_FOLD
from ensemble.report import score_models, versus_best_expert
from ensemble.simulated_logits import complementary_logits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN_DIR = Path("runs/quickstart")
DEFAULT_SYNTHETIC_RUN_DIR = Path("runs/synthetic")
DEFAULT_FINE_RUN_DIR = Path("runs/finetune_emoji_subcategory")
SYNTHETIC_RECIPE = REPO / "recipes" / "synthetic.yaml"
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "fusion_quality.json"
DATASETS = ("emoji", "emoji_few_rows", "emoji_fine", "synthetic", "complementary")
FEW_ROWS_K = (2, 4, 8)
COMPLEMENTARY_ROWS = 3000
QUICK_ROWS = 200
QUICK_COMPLEMENTARY_ROWS = 300
QUICK_PARAMS: dict[str, dict[str, Any]] = {"gating": {"max_epochs": 3}, "stacking": {"Cs": (1.0,)}}
BEST_EXPERT = "baseline: best single expert"
AVERAGE = "baseline: probability averaging"
SKLEARN_STACKING = "baseline: sklearn stacking (LogisticRegression)"
ORACLE = "oracle (any expert right)"
AS_IS = "as is"
SKLEARN_MAX_ITER = 1000
METRICS = ("accuracy", "macro_f1", "nll", "ece")
BASELINES = (BEST_EXPERT, AVERAGE, SKLEARN_STACKING)
#: Column names of the baselines in the availability table.
SHORT_NAMES = dict(zip(BASELINES, ("best single expert", "averaging", "sklearn stacking"),
                       strict=True))

Predictor = Callable[[LogitSet], np.ndarray]


@dataclass
class Dataset:
    """One benchmark dataset: fit logits + labels, test logits + labels."""

    name: str
    source: str
    fit_split: str
    fit: LogitSet
    y_fit: np.ndarray
    test: LogitSet
    y_test: np.ndarray


# -- data ----------------------------------------------------------------------------------

def load_split(run_dir: Path, split: str) -> tuple[LogitSet, np.ndarray]:
    """A run's saved ``split`` logits and its labels as class indices."""
    directory = run_dir / "logits" / split
    logits = LogitSet.load(directory / "logits")
    record = json.loads((directory / "labels.json").read_text(encoding="utf-8"))
    if [str(i) for i in record["ids"]] != [str(i) for i in logits.ids]:
        raise SystemExit(f"{directory}: labels.json and the logits disagree on ids.")
    position = {name: i for i, name in enumerate(logits.class_names)}
    return logits, np.array([position[label] for label in record["labels"]], dtype=np.int64)


def run_fit_split(run_dir: Path, fit_split: str | None = None) -> str:
    """``fit_split``, else ``out_of_fold`` for a cross-fitted run, else ``validation``."""
    if fit_split:
        return fit_split
    return OUT_OF_FOLD if (run_dir / "logits" / OUT_OF_FOLD).is_dir() else "validation"


def load_run(name: str, run_dir: Path, fit_split: str | None = None) -> Dataset:
    """A finished run directory as a dataset: fit on ``fit_split``, test on ``test``."""
    split = run_fit_split(run_dir, fit_split)
    (fit, y_fit), (test, y_test) = load_split(run_dir, split), load_split(run_dir, "test")
    return Dataset(name, str(run_dir), split, fit, y_fit, test, y_test)


def few_rows(logits: LogitSet, y: np.ndarray, k: int, seed: int) -> tuple[LogitSet, np.ndarray]:
    """``k`` random rows per class (all of a class's rows when it has fewer), seeded,
    in their original order."""
    rng = np.random.default_rng([seed, k])
    chosen = [rng.choice(np.flatnonzero(y == c), size=min(k, int((y == c).sum())),
                         replace=False) for c in np.unique(y)]
    rows = np.sort(np.concatenate(chosen))
    return logits.subset(rows), y[rows]


def coarse_expert_logits(ds: Any, splits: Sequence[str]) -> dict[str, tuple[np.ndarray,
                                                                             np.ndarray]]:
    """Logits and features of an expert that reads only the ``category`` column (fitted on
    ``ds["train"]``), per split of ``splits``."""
    from ensemble.data import class_names
    from ensemble.experts import TabularExpert

    def grouped(split: str) -> Any:
        return ds[split].select_columns(["category", "label"]).map(
            lambda row: {"group": {"category": row["category"]}}, keep_in_memory=True)

    expert = TabularExpert(column="group", labels=class_names(ds),
                           estimator="sklearn.linear_model.LogisticRegression",
                           estimator_params={"max_iter": SKLEARN_MAX_ITER})
    expert.fit(grouped("train"))
    return {split: expert.predict_logits(grouped(split), return_features=True)
            for split in splits}


def load_fine(run_dir: Path) -> Dataset:
    """``emoji_fine``: the subcategory run's image logits and a coarse category expert."""
    from ensemble.data import class_names, load_emoji

    ds = load_emoji(label="subcategory")
    coarse = coarse_expert_logits(ds, ("validation", "test"))
    parts = []
    for split in ("validation", "test"):
        image = LogitSet.load(run_dir / "logits" / split)
        if list(image.class_names) != class_names(ds) or list(image.ids) != ds[split]["id"]:
            raise SystemExit(f"{run_dir}: its {split} logits are not those of "
                             "load_emoji(label='subcategory'); rerun finetune_emoji.py.")
        logits, features = coarse[split]
        parts.append((LogitSet({"image": image.logits["image"], "category": logits},
                               image.class_names, ids=image.ids,
                               features={"image": image.features["image"],
                                         "category": features}),
                      np.asarray(ds[split]["label"], dtype=np.int64)))
    (fit, y_fit), (test, y_test) = parts
    return Dataset("emoji_fine", f"{run_dir} + a category expert", "validation", fit, y_fit,
                   test, y_test)


def ensure_synthetic_run(run_dir: Path) -> str | None:
    """Run ``recipes/synthetic.yaml`` into ``run_dir`` unless its logits are there; the
    reason it could not, or ``None``."""
    logits = run_dir / "logits"
    if (logits / "test" / "labels.json").is_file() and any(
            (logits / split / "labels.json").is_file() for split in ("validation", OUT_OF_FOLD)):
        return None
    if not SYNTHETIC_RECIPE.is_file():
        return f"{SYNTHETIC_RECIPE} not found"
    command = [sys.executable, "-m", "ensemble", "run", str(SYNTHETIC_RECIPE),
               "--run-dir", str(run_dir), "-q"]
    print(f"synthetic: no logits in {run_dir}; running {' '.join(command[1:])} "
          "(under a minute)", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return f"`ensemble run` failed (exit {done.returncode}): " + " | ".join(tail)
    print(f"synthetic: run finished in {time.perf_counter() - start:.0f} s", flush=True)
    return None


def make_quick_split(n: int, seed: int, c: int = 4, d: int = 8) -> tuple[LogitSet, np.ndarray]:
    """Two random experts with complementary reliability: each is sharp on half the classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits, features = {}, {}
    for j, name in enumerate(("a", "b")):
        signal = np.where(y % 2 == j, 3.0, 0.5)
        scores = rng.normal(0.0, 1.0, (n, c)).astype(np.float32)
        scores[np.arange(n), y] += signal
        logits[name] = scores
        emb = rng.normal(0.0, 1.0, (n, d)).astype(np.float32)
        emb[np.arange(n), y % d] += signal
        features[name] = emb
    ids = [f"{seed}-{i}" for i in range(n)]
    return LogitSet(logits, [f"c{i}" for i in range(c)], ids=ids, features=features), y


def simulated(name: str, source: str, split: Callable[[int], tuple[LogitSet, np.ndarray]]
              ) -> Dataset:
    """A dataset from a seeded generator: fit set seed 0, test set seed 1."""
    (fit, y_fit), (test, y_test) = split(0), split(1)
    return Dataset(name, source, "simulated, seed 0", fit, y_fit, test, y_test)


def quick_datasets() -> list[Dataset]:
    """The two small simulated datasets of ``--quick``."""
    return [
        simulated("quick", f"make_quick_split({QUICK_ROWS}): two experts, no missing rows",
                  lambda seed: make_quick_split(QUICK_ROWS, seed)),
        simulated("quick_complementary",
                  f"complementary_logits({QUICK_COMPLEMENTARY_ROWS}): three experts",
                  lambda seed: complementary_logits(QUICK_COMPLEMENTARY_ROWS, seed=seed)),
    ]


def collect_datasets(args: argparse.Namespace) -> tuple[list[Dataset], dict[str, str]]:
    """The datasets of ``--datasets`` (or ``--quick``), and the reason for each skipped one."""
    if args.quick:
        return quick_datasets(), {}
    datasets: list[Dataset] = []
    skipped: dict[str, str] = {}
    emoji: Dataset | None = None
    if {"emoji", "emoji_few_rows"} & set(args.datasets):
        if (args.run_dir / "logits" / "test").is_dir():
            emoji = load_run("emoji", args.run_dir, args.fit_split)
        else:
            reason = (f"no finished run in {args.run_dir} "
                      "(make one with `ensemble run recipes/quickstart.yaml`)")
            for name in ("emoji", "emoji_few_rows"):
                if name in args.datasets:
                    skipped[name] = reason
    for name in args.datasets:
        if name == "emoji" and emoji is not None:
            datasets.append(emoji)
        elif name == "emoji_few_rows" and emoji is not None:
            for k in args.few_rows_k:
                fit, y_fit = few_rows(emoji.fit, emoji.y_fit, k, args.seed)
                datasets.append(Dataset(f"emoji_k{k}", emoji.source,
                                        f"{emoji.fit_split}, {k} per class", fit, y_fit,
                                        emoji.test, emoji.y_test))
        elif name == "emoji_fine":
            if (args.fine_run_dir / "logits" / "test").is_dir():
                datasets.append(load_fine(args.fine_run_dir))
            else:
                skipped[name] = (f"no logits in {args.fine_run_dir} (make them with "
                                 "`python benchmarks/finetune_emoji.py --label subcategory "
                                 "--experts image`)")
        elif name == "synthetic":
            reason = ensure_synthetic_run(args.synthetic_run_dir)
            if reason:
                skipped[name] = reason
            else:
                datasets.append(load_run(name, args.synthetic_run_dir))
        elif name == "complementary":
            rows = args.complementary_rows
            datasets.append(simulated(
                name, f"complementary_logits({rows}): three experts",
                lambda seed, rows=rows: complementary_logits(rows, seed=seed)))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}", flush=True)
    return datasets, skipped


# -- baselines -----------------------------------------------------------------------------

def averaged(logits: LogitSet) -> np.ndarray:
    """Unweighted mean of the present experts' probabilities (absent experts skipped)."""
    mask = np.asarray(logits.mask, dtype=np.float64)
    probas = logits.probabilities()
    total = sum(probas[m] * mask[:, [j]] for j, m in enumerate(logits.expert_names))
    return total / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)


def first_present(logits: LogitSet, ranking: Sequence[str]) -> np.ndarray:
    """Per row, the probabilities of the first expert of ``ranking`` that is present
    (uniform where none is)."""
    probas = logits.probabilities()
    out = np.full((logits.n_rows, logits.n_classes), 1.0 / logits.n_classes)
    todo = np.ones(logits.n_rows, dtype=bool)
    for name in ranking:
        rows = todo & logits.present(name)
        out[rows] = probas[name][rows]
        todo &= ~rows
    return out


def _log_proba_design(logits: LogitSet) -> np.ndarray:
    probas = logits.probabilities()  # absent experts: uniform
    return np.hstack([np.log(np.clip(probas[m], 1e-12, None)) for m in logits.expert_names])


def sklearn_stacking(fit: LogitSet, y_fit: np.ndarray) -> Predictor:
    """``StackingClassifier``'s final estimator on the concatenated expert log-probabilities,
    fitted; returns ``logits -> probabilities``."""
    model = LogisticRegression(max_iter=SKLEARN_MAX_ITER)  # lbfgs: multinomial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_log_proba_design(fit), y_fit)

    def predict(logits: LogitSet) -> np.ndarray:
        proba = np.zeros((logits.n_rows, logits.n_classes))
        proba[:, model.classes_] = model.predict_proba(_log_proba_design(logits))
        return proba

    return predict


def expert_ranking(logits: LogitSet, y: np.ndarray) -> list[str]:
    """Experts by accuracy on the rows where each is present, best first (ties: lower NLL)."""
    probas = logits.probabilities()
    scores = {}
    for name in logits.expert_names:
        rows = logits.present(name)
        if not rows.any():
            scores[name] = (-1.0, 0.0)
            continue
        row = score_models(y[rows], {name: probas[name][rows]}, bootstrap=0)[name]
        scores[name] = (row["accuracy"]["value"], -row["nll"]["value"])
    return sorted(logits.expert_names, key=lambda m: scores[m], reverse=True)


def best_expert(fit: LogitSet, y_fit: np.ndarray) -> str:
    """The expert with the highest accuracy on the fit logits (ties: lower NLL)."""
    return expert_ranking(fit, y_fit)[0]


# -- availability patterns -----------------------------------------------------------------

def patterns(logits: LogitSet) -> list[tuple[str, np.ndarray | None]]:
    """``(label, keep)`` per availability pattern: ``"as is"`` (``keep=None``) when some
    test rows already miss an expert, then every non-empty set of experts, largest first."""
    names = logits.expert_names
    out: list[tuple[str, np.ndarray | None]] = []
    if not np.asarray(logits.mask).all():
        out.append((AS_IS, None))
    for size in range(len(names), 0, -1):
        for chosen in itertools.combinations(range(len(names)), size):
            keep = np.zeros(len(names), dtype=bool)
            keep[list(chosen)] = True
            label = " + ".join(names[j] for j in chosen)
            out.append((label + (" only" if size == 1 and len(names) > 1 else ""), keep))
    return out


def availability(test: LogitSet, y: np.ndarray, predictors: Mapping[str, Predictor], *,
                 bootstrap: int, seed: int) -> list[dict[str, Any]]:
    """One row per availability pattern (see the module docstring)."""
    mask = np.asarray(test.mask)
    table = []
    for label, keep in patterns(test):
        if keep is None:
            rows = np.arange(test.n_rows)
            subset = test
            ranking = expert_ranking(test, y)
            experts = {f"best present per row ({' > '.join(ranking)})":
                       first_present(test, ranking)}
        else:
            rows = np.flatnonzero(mask[:, keep].all(axis=1))
            pattern_mask = np.zeros_like(mask)
            pattern_mask[:, keep] = True
            subset = test.with_mask(pattern_mask).subset(rows)
            probas = subset.probabilities()
            experts = {name: probas[name] for j, name in enumerate(test.expert_names) if keep[j]}
        entry: dict[str, Any] = {
            "pattern": label,
            "experts": list(test.expert_names) if keep is None else
                       [m for j, m in enumerate(test.expert_names) if keep[j]],
            "as_is": keep is None,
            "n": int(rows.size),
        }
        if rows.size == 0:
            table.append({**entry, "accuracy": {}, "versus_best_expert_present": {}})
            continue
        labels = y[rows]
        model_probas = {model: predict(subset) for model, predict in predictors.items()}
        versus = versus_best_expert(labels, experts, model_probas, bootstrap=bootstrap,
                                    seed=seed)
        reference = next(iter(versus.values()))["expert"].removeprefix("expert: ")
        entry["best_expert_present"] = reference
        entry["best_expert_present_accuracy"] = float(
            (experts[reference].argmax(axis=1) == labels).mean())
        entry["accuracy"] = {model: float((p.argmax(axis=1) == labels).mean())
                             for model, p in model_probas.items()}
        for row in versus.values():
            row.pop("expert")
            row["significantly_below"] = bool(row["difference"]["high"] < 0)
        entry["versus_best_expert_present"] = versus
        table.append(entry)
    return table


# -- benchmark -----------------------------------------------------------------------------

def run(fit: LogitSet, y_fit: np.ndarray, test: LogitSet, y_test: np.ndarray, *,
        methods: Sequence[str], params: Mapping[str, Mapping[str, Any]],
        bootstrap: int, seed: int) -> dict[str, Any]:
    """Fit every combiner and baseline on ``fit``; both tables on ``test``."""
    experts = test.probabilities()
    ranking = expert_ranking(fit, y_fit)
    predictors: dict[str, Predictor] = {
        BEST_EXPERT: lambda logits: first_present(logits, ranking),
        AVERAGE: averaged,
        SKLEARN_STACKING: sklearn_stacking(fit, y_fit),
    }
    fit_seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in methods:
        start = time.perf_counter()
        try:
            combiner = create_combiner(name, **params.get(name, {})).fit(fit, y_fit)
        except Exception as error:  # one combiner failing must not stop the benchmark
            errors[name] = f"{type(error).__name__}: {error}"
            print(f"  {name} failed to fit: {errors[name]}", flush=True)
            continue
        fit_seconds[name] = time.perf_counter() - start
        predictors[name] = combiner.predict_proba
    probas = {model: predict(test) for model, predict in predictors.items()}
    hits = oracle_hits(y_test, experts, {m: test.present(m) for m in test.expert_names})
    scores = score_models(y_test, probas, oracle=hits, bootstrap=bootstrap, seed=seed)
    base_acc = scores[BEST_EXPERT]["accuracy"]["value"]
    oracle_acc = scores[ORACLE]["accuracy"]["value"]
    gap = oracle_acc - base_acc
    models = []
    for model, row in scores.items():
        kind = ("oracle" if model == ORACLE else
                "baseline" if model.startswith("baseline: ") else "combiner")
        acc = row["accuracy"]["value"]
        models.append({
            "model": model,
            "kind": kind,
            **row,
            "gap_closed": (acc - base_acc) / gap if gap > 0 else None,
            **({"fit_s": fit_seconds[model]} if model in fit_seconds else {}),
        })
    return {
        "best_expert": ranking[0],
        "best_expert_accuracy": base_acc,
        "oracle_accuracy": oracle_acc,
        "models": models,
        "errors": errors,
        "availability": availability(test, y_test, predictors, bootstrap=bootstrap, seed=seed),
    }


def run_dataset(dataset: Dataset, *, methods: Sequence[str],
                params: Mapping[str, Mapping[str, Any]], bootstrap: int, seed: int
                ) -> dict[str, Any]:
    """One dataset's section of the JSON."""
    start = time.perf_counter()
    result = run(dataset.fit, dataset.y_fit, dataset.test, dataset.y_test, methods=methods,
                 params=params, bootstrap=bootstrap, seed=seed)
    return {
        "source": dataset.source,
        "fit_split": dataset.fit_split,
        "eval_split": "test",
        "n_fit": int(dataset.y_fit.size),
        "n_test": int(dataset.y_test.size),
        "n_classes": int(dataset.test.n_classes),
        "experts": list(dataset.test.expert_names),
        "test_rows_missing_an_expert": int((~np.asarray(dataset.test.mask)).any(axis=1).sum()),
        **result,
        "seconds": time.perf_counter() - start,
    }


# -- Markdown ------------------------------------------------------------------------------

def _cell(entry: Mapping[str, float] | None) -> str:
    if entry is None:
        return ""
    text = f"{entry['value']:.3f}"
    if not np.isnan(entry["low"]):
        text += f" [{entry['low']:.3f}, {entry['high']:.3f}]"
    return text


def markdown_table(result: Mapping[str, Any]) -> str:
    """The test-set table of one dataset's section."""
    lines = ["| model | accuracy | macro-F1 | NLL | ECE | gap closed |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["models"]:
        name = row["model"]
        if name == BEST_EXPERT:
            name += f" ({result['best_expert']})"
        share = "" if row["gap_closed"] is None else f"{row['gap_closed']:.2f}"
        cells = [_cell(row.get(metric)) for metric in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share} |")
    return "\n".join(lines)


def _versus_cell(accuracy: float, versus: Mapping[str, Any]) -> str:
    diff = versus["difference"]
    text = f"{accuracy:.3f} ({diff['value']:+.3f}"
    if not np.isnan(diff["low"]):
        text += f" [{diff['low']:+.3f}, {diff['high']:+.3f}]"
    text += ")"
    return f"**{text}** ▼" if versus["significantly_below"] else text


def availability_table(result: Mapping[str, Any]) -> str:
    """The availability table of one dataset's section: accuracy (difference vs the best
    expert present [95% interval]); ▼ marks an interval entirely below zero."""
    models = [row["model"] for row in result["models"] if row["kind"] != "oracle"]
    header = ["pattern", "n", "best expert present",
              *(SHORT_NAMES.get(m, m) for m in models)]
    lines = ["| " + " | ".join(header) + " |",
             "| --- | ---: | --- |" + " ---: |" * len(models)]
    for row in result["availability"]:
        if not row["n"]:
            lines.append(f"| {row['pattern']} | 0 |" + " |" * (len(models) + 1))
            continue
        cells = [row["pattern"], str(row["n"]),
                 f"{row['best_expert_present']} {row['best_expert_present_accuracy']:.3f}"]
        cells += [_versus_cell(row["accuracy"][m], row["versus_best_expert_present"][m])
                  for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(output: Mapping[str, Any]) -> str:
    """Both tables of every dataset, with a heading each."""
    parts = []
    for name, result in output["datasets"].items():
        missing = result["test_rows_missing_an_expert"]
        parts += [
            f"### {name}",
            "",
            f"{result['source']}. Fit: {result['n_fit']} rows ({result['fit_split']}); "
            f"test: {result['n_test']} rows ({missing} missing an expert); "
            f"{result['n_classes']} classes; experts: {', '.join(result['experts'])}.",
            "",
            markdown_table(result),
            "",
            "Availability patterns: accuracy (paired difference vs the best expert present "
            "[95% bootstrap interval]); ▼: significantly below it.",
            "",
            availability_table(result),
            "",
        ]
        for model, error in result["errors"].items():
            parts.append(f"{model} could not be fitted: {error}")
    for name, reason in output["skipped"].items():
        parts.append(f"skipped {name}: {reason}")
    return "\n".join(parts).rstrip()


# -- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS),
                        help="datasets to run (default: all that are available)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help="the finished quickstart run of the emoji datasets")
    parser.add_argument("--fit-split", default=None,
                        help="emoji logits the combiners are fitted on (default: out_of_fold "
                             "when the run was cross-fitted, else validation)")
    parser.add_argument("--few-rows-k", type=int, nargs="+", default=list(FEW_ROWS_K),
                        help="rows per class of the emoji_few_rows tables")
    parser.add_argument("--fine-run-dir", type=Path, default=DEFAULT_FINE_RUN_DIR,
                        help="finetune_emoji.py --label subcategory run (emoji_fine)")
    parser.add_argument("--synthetic-run-dir", type=Path, default=DEFAULT_SYNTHETIC_RUN_DIR,
                        help="run directory of recipes/synthetic.yaml (run first if absent)")
    parser.add_argument("--complementary-rows", type=int, default=COMPLEMENTARY_ROWS,
                        help="rows of the complementary fit and test sets")
    parser.add_argument("--quick", action="store_true",
                        help="two small simulated datasets instead, no run needed (tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON result path")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"combiners to fit (default: all of {list_combiners()})")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0,
                        help="bootstrap seed (and the emoji_few_rows subsample)")
    args = parser.parse_args(argv)
    methods = args.methods or list_combiners()
    params: Mapping[str, Mapping[str, Any]] = QUICK_PARAMS if args.quick else {}
    start = time.perf_counter()
    datasets, skipped = collect_datasets(args)
    sections: dict[str, Any] = {}
    for dataset in datasets:
        print(f"{dataset.name}: fitting {len(methods)} combiners on {dataset.y_fit.size} rows",
              flush=True)
        sections[dataset.name] = run_dataset(dataset, methods=methods, params=params,
                                             bootstrap=args.bootstrap, seed=args.seed)
    output = {
        "benchmark": "fusion_quality",
        "quick": args.quick,
        "eval_split": "test",
        "bootstrap": args.bootstrap,
        "confidence": 0.95,
        "seed": args.seed,
        "combiners": list(methods),
        "combiner_params": {name: dict(params.get(name, {})) for name in methods},
        "baselines": {
            BEST_EXPERT: "expert with the highest accuracy on the fit logits; where it is "
                         "absent, the next present expert in that ranking",
            AVERAGE: "unweighted mean of the present experts' softmax probabilities",
            SKLEARN_STACKING: (f"LogisticRegression(max_iter={SKLEARN_MAX_ITER}), multinomial, "
                               "on concatenated per-expert log-probabilities (the features "
                               "StackingClassifier's final estimator sees)"),
        },
        "gap_closed": "(acc - best_expert_acc) / (oracle_acc - best_expert_acc), on test",
        "availability": ("per pattern of present experts: test rows where all of them are "
                         "present, masked down to them ('as is': the rows unchanged); "
                         "difference = model accuracy - best expert present accuracy, paired "
                         "bootstrap (ensemble.report.versus_best_expert); significantly_below: "
                         "the whole interval is below zero"),
        "versions": library_versions(),
        "datasets": sections,
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }
    write_json(args.out, output)
    print(markdown(output))
    print(f"\nwrote {args.out} ({output['seconds']:.0f} s)")
    return output


if __name__ == "__main__":
    main()
    raise SystemExit(0)
