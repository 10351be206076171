"""Fusion quality: every combiner vs simple baselines on cached held-out logits.

Usage::

    python benchmarks/fusion_quality.py                          # runs/quickstart
    python benchmarks/fusion_quality.py --run-dir PATH           # any finished run directory
    python benchmarks/fusion_quality.py --quick                  # synthetic logits (test suite)

Every registered combiner (default hyper-parameters) is fitted on the run's validation
logits (``logits/validation``), or on its out-of-fold logits (``logits/out_of_fold``) when
the run was cross-fitted, and scored on its test logits (``logits/test``); each split
is a :class:`~ensemble.logits.LogitSet` directory ``logits/<split>/logits`` plus
``logits/<split>/labels.json`` (``{"ids": [...], "labels": [class name, ...]}``). Baselines:

- **best single expert** – the expert with the highest validation accuracy;
- **probability averaging** – the unweighted mean of the present experts' softmax outputs;
- **scikit-learn stacking** – ``LogisticRegression`` (multinomial) on the concatenated
  per-expert log-probabilities. That is exactly what the final estimator of
  ``sklearn.ensemble.StackingClassifier(stack_method="predict_proba")`` sees; the logits are
  precomputed on held-out data, so the base estimators' cross-validated predictions are
  replaced by the held-out validation predictions.

Accuracy, macro-F1, NLL and ECE with bootstrap 95% intervals come from
:func:`ensemble.report.score_models` (same resamples for every model), as does the oracle
("any expert right") accuracy. ``gap_closed`` is the share of the gap from the best expert
to the oracle that a model closes on test: ``(acc - best_expert_acc) / (oracle_acc -
best_expert_acc)`` (``null`` when the oracle equals the best expert).

Writes ``benchmarks/results/fusion_quality.json`` (atomically) and prints a Markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import time
import warnings
from collections.abc import Mapping, Sequence
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
from ensemble.report import score_models

DEFAULT_RUN_DIR = Path("runs/quickstart")
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "fusion_quality.json"
QUICK_PARAMS: dict[str, dict[str, Any]] = {"gating": {"max_epochs": 3}, "stacking": {"Cs": (1.0,)}}
BEST_EXPERT = "baseline: best single expert"
AVERAGE = "baseline: probability averaging"
SKLEARN_STACKING = "baseline: sklearn stacking (LogisticRegression)"
ORACLE = "oracle (any expert right)"
SKLEARN_MAX_ITER = 1000
METRICS = ("accuracy", "macro_f1", "nll", "ece")


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


# -- baselines -----------------------------------------------------------------------------

def averaged(logits: LogitSet) -> np.ndarray:
    """Unweighted mean of the present experts' probabilities (absent experts skipped)."""
    mask = np.asarray(logits.mask, dtype=np.float64)
    probas = logits.probabilities()
    total = sum(probas[m] * mask[:, [j]] for j, m in enumerate(logits.expert_names))
    return total / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)


def _log_proba_design(logits: LogitSet) -> np.ndarray:
    probas = logits.probabilities()  # absent experts: uniform
    return np.hstack([np.log(np.clip(probas[m], 1e-12, None)) for m in logits.expert_names])


def sklearn_stacking(fit: LogitSet, y_fit: np.ndarray, test: LogitSet) -> np.ndarray:
    """``StackingClassifier``'s final estimator on the concatenated expert log-probabilities."""
    model = LogisticRegression(max_iter=SKLEARN_MAX_ITER)  # lbfgs: multinomial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_log_proba_design(fit), y_fit)
    proba = np.zeros((test.n_rows, test.n_classes))
    proba[:, model.classes_] = model.predict_proba(_log_proba_design(test))
    return proba


def best_expert(fit: LogitSet, y_fit: np.ndarray) -> str:
    """The expert with the highest validation accuracy (ties: lower NLL)."""
    scores = score_models(y_fit, fit.probabilities(), bootstrap=0)
    return max(fit.expert_names, key=lambda m: (scores[m]["accuracy"]["value"],
                                              -scores[m]["nll"]["value"]))


# -- benchmark -----------------------------------------------------------------------------

def run(fit: LogitSet, y_fit: np.ndarray, test: LogitSet, y_test: np.ndarray, *,
        methods: Sequence[str], params: Mapping[str, Mapping[str, Any]],
        bootstrap: int, seed: int) -> dict[str, Any]:
    experts = test.probabilities()
    chosen = best_expert(fit, y_fit)
    probas: dict[str, np.ndarray] = {
        BEST_EXPERT: experts[chosen],
        AVERAGE: averaged(test),
        SKLEARN_STACKING: sklearn_stacking(fit, y_fit, test),
    }
    fit_seconds: dict[str, float] = {}
    for name in methods:
        start = time.perf_counter()
        combiner = create_combiner(name, **params.get(name, {})).fit(fit, y_fit)
        fit_seconds[name] = time.perf_counter() - start
        probas[name] = combiner.predict_proba(test)
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
        "best_expert": chosen,
        "best_expert_accuracy": base_acc,
        "oracle_accuracy": oracle_acc,
        "models": models,
    }


def _cell(entry: Mapping[str, float] | None) -> str:
    if entry is None:
        return ""
    text = f"{entry['value']:.3f}"
    if not np.isnan(entry["low"]):
        text += f" [{entry['low']:.3f}, {entry['high']:.3f}]"
    return text


def markdown_table(result: Mapping[str, Any]) -> str:
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help="a finished run directory with logits/{validation,test}")
    parser.add_argument("--fit-split", default=None,
                        help="logits the combiners are fitted on (default: out_of_fold when "
                             "the run was cross-fitted, else validation)")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic logits for two experts (200/200 rows), no run needed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON result path")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"combiners to fit (default: all of {list_combiners()})")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    methods = args.methods or list_combiners()
    cross_fitted = (args.run_dir / "logits" / OUT_OF_FOLD).is_dir() and not args.quick
    fit_split = args.fit_split or (OUT_OF_FOLD if cross_fitted else "validation")
    if args.quick:
        (fit, y_fit), (test, y_test) = make_quick_split(200, 0), make_quick_split(200, 1)
        params: Mapping[str, Mapping[str, Any]] = QUICK_PARAMS
        source = "synthetic (--quick)"
    else:
        (fit, y_fit), (test, y_test) = (load_split(args.run_dir, fit_split),
                                        load_split(args.run_dir, "test"))
        params = {}
        source = str(args.run_dir)
    result = run(fit, y_fit, test, y_test, methods=methods, params=params,
                 bootstrap=args.bootstrap, seed=args.seed)
    output = {
        "benchmark": "fusion_quality",
        "quick": args.quick,
        "source": source,
        "fit_split": fit_split,
        "eval_split": "test",
        "n_fit": int(y_fit.size),
        "n_test": int(y_test.size),
        "n_classes": int(test.n_classes),
        "experts": list(test.expert_names),
        "bootstrap": args.bootstrap,
        "confidence": 0.95,
        "combiner_params": {name: dict(params.get(name, {})) for name in methods},
        "baselines": {
            BEST_EXPERT: f"expert with the highest accuracy on {fit_split}",
            AVERAGE: "unweighted mean of the present experts' softmax probabilities",
            SKLEARN_STACKING: (f"LogisticRegression(max_iter={SKLEARN_MAX_ITER}), multinomial, "
                               "on concatenated per-expert log-probabilities (the features "
                               "StackingClassifier's final estimator sees)"),
        },
        "gap_closed": "(acc - best_expert_acc) / (oracle_acc - best_expert_acc), on test",
        "versions": library_versions(),
        **result,
    }
    write_json(args.out, output)
    print(markdown_table(result))
    print(f"\nwrote {args.out}")
    return output


if __name__ == "__main__":
    main()
    raise SystemExit(0)
