"""Time combiner fit/predict against scikit-learn LogisticRegression on the same features.

Usage::

    python benchmarks/combiners.py            # N in {1e3, 1e4, 1e5}, C in {10, 100}, M in {2, 3}
    python benchmarks/combiners.py --quick    # a tiny grid (used by the test suite)

Writes ``benchmarks/results/combiners.json`` (atomically) and prints a Markdown table.

Measurement rules (so that the ratios against scikit-learn are fair on a shared CPU):

- ``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) before torch loads: with the
  default busy-waiting OpenMP threads, small torch ops on a loaded 2-core machine run ~15x
  slower. It does not change any result.
- The scikit-learn baseline runs with BLAS limited to one thread (``threadpoolctl``): its
  L-BFGS-B (scipy >= 1.15) issues many small BLAS calls, and multi-threaded OpenBLAS on a
  loaded machine makes it ~50x slower (25 s instead of 0.5 s at N=1e3, C=100, M=3).
- Every method is fitted once on a tiny set before timing (warm-up), so one-time import
  costs (torch.optim pulls in torch._dynamo, ~1.5 s) are not charged to the first method.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import itertools
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ensemble._io import library_versions, write_json
from ensemble.combiners import create_combiner, list_combiners
from ensemble.labels import log_softmax
from ensemble.logits import LogitSet

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "combiners.json"
FULL_GRID = {"n": (1_000, 10_000, 100_000), "c": (10, 100), "m": (2, 3)}
QUICK_GRID = {"n": (300,), "c": (4,), "m": (2,)}
QUICK_PARAMS: dict[str, dict[str, Any]] = {"gating": {"max_epochs": 3}, "stacking": {"Cs": (1.0,)}}
N_FEATURES = 32
BASELINE = "sklearn LogisticRegression"
BASELINE_MAX_ITER = 100
# Issue #3 targets at N=1e5, C=100, M=3: fit seconds (per method) and predict rows/s (all).
TARGET_POINT = (100_000, 100, 3)
FIT_TARGETS_S = {"voting": 1.0, "stacking": 1.0, "gating": 10.0}
PREDICT_TARGET_ROWS_S = 1e5


@dataclass
class Row:
    """One timing measurement."""

    method: str
    n: int
    c: int
    m: int
    fit_s: float
    predict_s: float
    predict_rows_per_s: float
    accuracy: float
    fit_vs_sklearn: float | None = None
    target: str = ""


def make_logits(n: int, c: int, m: int, seed: int) -> tuple[LogitSet, np.ndarray]:
    """Noisy experts, each better on its own share of the classes, with embeddings."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits, features = {}, {}
    for j in range(m):
        signal = np.where(y % m == j, 3.0, 1.0)
        scores = rng.normal(0.0, 1.0, (n, c)).astype(np.float32)
        scores[np.arange(n), y] += signal
        logits[f"expert{j}"] = scores
        features[f"expert{j}"] = rng.normal(0.0, 1.0, (n, N_FEATURES)).astype(np.float32)
        features[f"expert{j}"][np.arange(n), y % N_FEATURES] += signal
    names = [f"c{i}" for i in range(c)]
    return LogitSet(logits, names, features=features), y


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_combiner(name: str, params: dict[str, Any], train: LogitSet, y: np.ndarray,
                   test: LogitSet, y_test: np.ndarray) -> tuple[float, float, float]:
    combiner = create_combiner(name, **params)
    fit_s, _ = _timed(lambda: combiner.fit(train, y))
    predict_s, proba = _timed(lambda: combiner.predict_proba(test))
    return fit_s, predict_s, float((proba.argmax(1) == y_test).mean())


def bench_sklearn(train: LogitSet, y: np.ndarray, test: LogitSet,
                  y_test: np.ndarray) -> tuple[float, float, float]:
    def design(logit_set: LogitSet) -> np.ndarray:
        return np.hstack([log_softmax(logit_set.logits[m]) for m in logit_set.expert_names])

    model = LogisticRegression(max_iter=BASELINE_MAX_ITER)
    x_train, x_test = design(train), design(test)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_s, _ = _timed(lambda: model.fit(x_train, y))
        predict_s, proba = _timed(lambda: model.predict_proba(x_test))
    return fit_s, predict_s, float((proba.argmax(1) == y_test).mean())


def warm_up(methods: Sequence[str], quick: bool) -> None:
    """Fit and predict every method once on a tiny set (one-time import costs)."""
    tiny, y = make_logits(200, 4, 2, seed=2)
    for name in methods:
        params = QUICK_PARAMS.get(name, {}) if quick else {}
        create_combiner(name, **params).fit(tiny, y).predict_proba(tiny)


def run(grid: dict[str, Sequence[int]], methods: Sequence[str], quick: bool,
        baseline: bool = True) -> list[Row]:
    rows: list[Row] = []
    for n, c, m in itertools.product(grid["n"], grid["c"], grid["m"]):
        train, y = make_logits(n, c, m, seed=0)
        test, y_test = make_logits(n, c, m, seed=1)
        measured = {} if not baseline else {BASELINE: bench_sklearn(train, y, test, y_test)}
        for name in methods:
            params = QUICK_PARAMS.get(name, {}) if quick else {}
            measured[name] = bench_combiner(name, params, train, y, test, y_test)
        reference = measured.get(BASELINE, (None,))[0]
        for method, (fit_s, predict_s, acc) in measured.items():
            row = Row(method, n, c, m, fit_s, predict_s, n / max(predict_s, 1e-9), acc,
                      fit_vs_sklearn=None if reference is None else fit_s / reference)
            row.target = _target(row)
            rows.append(row)
            print(_format_row(rows[-1]), flush=True)
    return rows


def _target(row: Row) -> str:
    """``met`` / ``missed`` against issue #3 at its grid point, else empty."""
    if (row.n, row.c, row.m) != TARGET_POINT or row.method == BASELINE:
        return ""
    checks = [f"predict >= 1e5 rows/s: "
              f"{'met' if row.predict_rows_per_s >= PREDICT_TARGET_ROWS_S else 'missed'}"]
    if row.method in FIT_TARGETS_S:
        limit = FIT_TARGETS_S[row.method]
        checks.insert(0, f"fit <= {limit:g} s: {'met' if row.fit_s <= limit else 'missed'}")
    return "; ".join(checks)


HEADER = ("| method | N | C | M | fit (s) | fit / sklearn | predict (s) | predict rows/s "
          "| accuracy | target |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def _format_row(row: Row) -> str:
    ratio = "" if row.fit_vs_sklearn is None else f"{row.fit_vs_sklearn:.3g}"
    return (f"| {row.method} | {row.n} | {row.c} | {row.m} | {row.fit_s:.3f} | {ratio} | "
            f"{row.predict_s:.3f} | {row.predict_rows_per_s:,.0f} | {row.accuracy:.3f} | "
            f"{row.target} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid, for smoke tests")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON result path")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"combiners to time (default: all of {list_combiners()})")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the scikit-learn LogisticRegression baseline")
    for axis in ("n", "c", "m"):
        parser.add_argument(f"--{axis}", type=int, nargs="*", default=None,
                            help=f"override the {axis.upper()} values of the grid")
    args = parser.parse_args(argv)
    methods = args.methods or list_combiners()
    grid = dict(QUICK_GRID if args.quick else FULL_GRID)
    grid.update({axis: getattr(args, axis) for axis in ("n", "c", "m") if getattr(args, axis)})
    warm_up(methods, args.quick)
    print(HEADER)
    rows = run(grid, methods, args.quick, baseline=not args.no_baseline)
    write_json(args.output, {
        "benchmark": "combiners",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_1min": os.getloadavg()[0]},
        "baseline": {"estimator": f"LogisticRegression(max_iter={BASELINE_MAX_ITER})",
                     "blas_threads": 1, "features": "concatenated per-expert log-probabilities"},
        "defaults": "every combiner with its default hyper-parameters (after a warm-up fit)",
        "versions": library_versions(),
        "results": [asdict(row) for row in rows],
    })
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
