"""The evaluation report: leaderboard with bootstrap intervals, availability patterns, plots.

:func:`write_report` scores each expert, each fitted combiner and the oracle ("any expert
right") bound on one labelled :class:`~ensemble.logits.LogitSet` and writes

* ``metrics.json`` – every number below, machine-readable;
* ``report.md`` – the leaderboard (accuracy, macro-F1, NLL, ECE with bootstrap intervals),
  results per availability pattern (every modality / each one alone, simulated by masking
  the others), per-class precision/recall/F1 of the best combiner and the plots;
* ``plots/*.png`` – reliability diagrams, the best combiner's confusion matrix and the
  gate weights by class (when a combiner has gate weights).

:func:`write_predictor_report` does the same for a saved
:class:`~ensemble.predictor.FusionPredictor` on a labelled dataset (``ensemble evaluate
--bundle``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from ._io import atomic_directory, atomic_write_text, write_json
from .exceptions import ConfigError

__all__ = [
    "REPORT_VERSION",
    "by_pattern",
    "leaderboard_table",
    "per_class",
    "render_markdown",
    "score_models",
    "write_predictor_report",
    "write_report",
]

#: Bump when the report's content changes, so ``ensemble run`` rebuilds old reports.
REPORT_VERSION = 3  # 3: every partial pattern; combiners' summaries
_LEADERBOARD_METRICS = ("accuracy", "macro_f1", "nll", "ece")
_ORACLE = "oracle (any expert right)"


@dataclass
class EvaluationConfig:
    """Report settings: bootstrap resamples for the intervals, ECE bins, plots."""

    bootstrap: int = 1000
    confidence: float = 0.95
    ece_bins: int = 15
    plots: bool = True
    seed: int = 0


def _metric_fns(ece_bins: int) -> dict[str, Any]:
    return {
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "nll": metrics.nll,
        "ece": lambda y, p: metrics.ece(y, p, n_bins=ece_bins),
    }


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_samples(n: int, bootstrap: int, seed: int) -> np.ndarray | None:
    """``[bootstrap, n]`` row indices drawn with replacement (``None`` for no bootstrap);
    the same ``seed`` gives the same resamples, so intervals of different tables pair up."""
    if not bootstrap:
        return None
    return np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))


def score_models(
    y: np.ndarray,
    probas: Mapping[str, np.ndarray],
    *,
    oracle: np.ndarray | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    ece_bins: int = 15,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {metric: {"value", "low", "high"}}}`` with percentile bootstrap intervals.

    The same resamples are used for every model, so intervals are comparable. ``oracle``
    (bool ``[N]``: some expert is right) adds an accuracy-only row.

    Example:
        >>> y = np.array([0, 1, 1, 0])
        >>> p = np.array([[.9, .1], [.2, .8], [.6, .4], [.7, .3]])
        >>> score_models(y, {"m": p}, bootstrap=0)["m"]["accuracy"]["value"]
        0.75
    """
    y = np.asarray(y, dtype=np.int64)
    samples = bootstrap_samples(y.size, bootstrap, seed)
    fns = _metric_fns(ece_bins)
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for model, proba in probas.items():
        row: dict[str, dict[str, float]] = {}
        for name, fn in fns.items():
            value = float(fn(y, proba))
            entry = {"value": value, "low": math.nan, "high": math.nan}
            if samples is not None:
                boot = np.array([fn(y[idx], proba[idx]) for idx in samples])
                entry["low"], entry["high"] = _interval(boot, confidence)
            row[name] = entry
        scores[model] = row
    if oracle is not None:
        hits = np.asarray(oracle, dtype=np.float64)
        entry = {"value": float(hits.mean()), "low": math.nan, "high": math.nan}
        if samples is not None:
            entry["low"], entry["high"] = _interval(hits[samples].mean(axis=1), confidence)
        scores[_ORACLE] = {"accuracy": entry}
    return scores


def versus_best_expert(
    y: np.ndarray,
    experts: Mapping[str, np.ndarray],
    combined: Mapping[str, np.ndarray],
    *,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Each combiner's accuracy minus the most accurate expert's, on the same examples.

    Paired: the bootstrap resamples examples once for both models (an interval that excludes
    0 means the combiner is better or worse on these data, not just in its own interval),
    and ``mcnemar_p`` is the exact two-sided McNemar test on the examples where exactly one
    of the two is right (``wins``: the combiner only, ``losses``: the expert only).

    Example:
        >>> y = np.array([0, 1, 1, 0])
        >>> e = {"text": np.array([[.9, .1], [.6, .4], [.6, .4], [.7, .3]])}
        >>> c = {"stacking": np.array([[.9, .1], [.2, .8], [.4, .6], [.7, .3]])}
        >>> versus_best_expert(y, e, c, bootstrap=0)["stacking"]["wins"]
        2
    """
    from scipy.stats import binomtest

    y = np.asarray(y, dtype=np.int64)
    if not experts or not combined:
        return {}
    right = {name: p.argmax(axis=1) == y for name, p in experts.items()}
    expert = max(right, key=lambda name: (right[name].mean(), name))
    samples = bootstrap_samples(y.size, bootstrap, seed)
    result: dict[str, dict[str, Any]] = {}
    for label, proba in combined.items():
        hits = proba.argmax(axis=1) == y
        difference = hits.astype(np.float64) - right[expert]
        entry = {"value": float(difference.mean()), "low": math.nan, "high": math.nan}
        if samples is not None:
            entry["low"], entry["high"] = _interval(difference[samples].mean(axis=1), confidence)
        wins, losses = int((hits & ~right[expert]).sum()), int((~hits & right[expert]).sum())
        p_value = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        result[label] = {"expert": f"expert: {expert}", "difference": entry, "wins": wins,
                         "losses": losses, "mcnemar_p": float(p_value)}
    return result


_ALL_PATTERNS_UP_TO = 5


def _patterns(modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Availability patterns as boolean rows over ``modalities``: all, then (up to five
    experts) every partial pattern, largest first, then each expert alone."""
    n = len(modalities)
    everything = "both" if n == 2 else "all"
    patterns = {everything: np.ones(n, dtype=bool)}
    if n <= _ALL_PATTERNS_UP_TO:
        for size in range(n - 1, 1, -1):
            for members in itertools.combinations(range(n), size):
                keep = np.zeros(n, dtype=bool)
                keep[list(members)] = True
                patterns["+".join(modalities[j] for j in members)] = keep
    if n > 1:
        for j, name in enumerate(modalities):
            patterns[f"{name} only"] = np.eye(n, dtype=bool)[j]
    return patterns


def by_pattern(logits: Any, y: np.ndarray, combiners: Mapping[str, Any]
               ) -> dict[str, dict[str, Any]]:
    """Accuracy / macro-F1 / NLL of every model when only some modalities are given.

    For each pattern the rows that have its modalities keep them and the others are masked
    out, so "image only" is what the models do when the text is missing.
    """
    mask = np.asarray(logits.mask)
    results: dict[str, dict[str, Any]] = {}
    for pattern, keep in _patterns(tuple(logits.expert_names)).items():
        rows = np.flatnonzero(mask[:, keep].all(axis=1))
        if rows.size == 0:
            results[pattern] = {"n": 0, "models": {}}
            continue
        pattern_mask = np.zeros_like(mask)
        pattern_mask[:, keep] = mask[:, keep]
        subset = logits.with_mask(pattern_mask).subset(rows)
        labels = y[rows]
        probas = {f"expert: {name}": p for name, p in subset.probabilities().items()
                  if keep[list(logits.expert_names).index(name)]}
        probas.update({label: c.predict_proba(subset) for label, c in combiners.items()})
        models = {model: {"accuracy": metrics.accuracy(labels, p),
                          "macro_f1": metrics.macro_f1(labels, p),
                          "nll": metrics.nll(labels, p)} for model, p in probas.items()}
        results[pattern] = {"n": int(rows.size), "models": models}
    return results


def per_class(y: np.ndarray, proba: np.ndarray, class_names: tuple[str, ...]
              ) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y, proba.argmax(axis=1), labels=np.arange(len(class_names)), zero_division=0)
    return {name: {"precision": float(precision[k]), "recall": float(recall[k]),
                   "f1": float(f1[k]), "support": int(support[k])}
            for k, name in enumerate(class_names)}


def _best(scores: Mapping[str, Mapping[str, Mapping[str, float]]], candidates: list[str]) -> str:
    return max(candidates,
               key=lambda m: (scores[m]["accuracy"]["value"], -scores[m]["nll"]["value"]))


def write_report(
    directory: str | Path,
    logits: Any,
    y: np.ndarray,
    combiners: Mapping[str, Any],
    *,
    config: Any = None,
    title: str = "ensemble report",
    fit_split: str = "validation",
) -> dict[str, Any]:
    """Score everything on ``logits`` / ``y`` and write the report folder atomically.

    ``config`` is an :class:`EvaluationConfig` (default settings when
    ``None``). Returns the content of ``metrics.json``.
    """
    config = config or EvaluationConfig()
    y = np.asarray(y, dtype=np.int64)
    names = tuple(logits.class_names)
    experts = logits.probabilities()
    probas = {f"expert: {name}": p for name, p in experts.items()}
    combined = {label: c.predict_proba(logits) for label, c in combiners.items()}
    probas.update(combined)
    hits = metrics.oracle_hits(y, experts, {m: logits.present(m) for m in logits.expert_names})
    scores = score_models(y, probas, oracle=hits, bootstrap=config.bootstrap,
                          confidence=config.confidence, ece_bins=config.ece_bins,
                          seed=config.seed)
    best = _best(scores, list(combined)) if combined else _best(scores, list(probas))
    result: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "title": title,
        "n_examples": int(y.size),
        "class_names": list(names),
        "experts": list(logits.expert_names),
        "fit_split": fit_split,
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "leaderboard": [
            {"model": model,
             "kind": "oracle" if model == _ORACLE else
                     "expert" if model.startswith("expert: ") else "combiner",
             **row}
            for model, row in scores.items()
        ],
        "best_combiner": best,
        "versus_best_expert": versus_best_expert(y, experts, combined,
                                                 bootstrap=config.bootstrap,
                                                 confidence=config.confidence, seed=config.seed),
        "per_class": per_class(y, probas[best], names),
        "patterns": by_pattern(logits, y, combiners),
        "combiners": {label: c.summary() for label, c in combiners.items()},
        "plots": {},
    }
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        if config.plots:
            result["plots"] = _plots(tmp / "plots", y, probas, best, combiners, logits,
                                     ece_bins=config.ece_bins)
        write_json(tmp / "metrics.json", result)
        atomic_write_text(tmp / "report.md", render_markdown(result))
    return result


def write_predictor_report(
    directory: str | Path,
    predictor: Any,
    dataset: Any,
    *,
    label_column: str = "label",
    settings: Mapping[str, Any] | None = None,
    title: str = "ensemble report",
) -> dict[str, Any]:
    """Score a :class:`~ensemble.predictor.FusionPredictor` on a labelled ``datasets.Dataset``
    and write the report folder (see :func:`write_report`); returns ``metrics.json``.

    The experts' logits go through the predictor itself (its batch size and precision), so
    the combiner's and experts' numbers equal :meth:`FusionPredictor.evaluate`. The combiner
    is named by the bundle's ``combiner_label`` (else its registry name). Report settings are
    the bundle recipe's ``evaluation`` section (else the defaults), updated with
    ``settings`` (:class:`EvaluationConfig` fields). ``directory`` is
    replaced as a whole, so it must be new, empty or an earlier report.

    Example:
        >>> predictor = FusionPredictor.load("runs/quickstart/bundle")  # doctest: +SKIP
        >>> write_predictor_report("eval", predictor, ds["test"])["best_combiner"]  # doctest: +SKIP
        'stacking'
    """
    import dataclasses

    from .labels import LabelSpace

    _check_report_directory(Path(directory))
    resolved = predictor.config if isinstance(predictor.config, Mapping) else {}
    recipe = resolved.get("recipe") if isinstance(resolved.get("recipe"), Mapping) else {}
    fields = {f.name for f in dataclasses.fields(EvaluationConfig)}
    given = {**(recipe.get("evaluation") or {}), **(settings or {})}
    unknown = sorted(set(settings or {}) - fields)
    if unknown:
        raise ConfigError(f"unknown report settings {unknown}; known: {sorted(fields)}.")
    config = EvaluationConfig(**{k: v for k, v in given.items() if k in fields})
    logits = predictor.dataset_logits(dataset)
    labels = LabelSpace(predictor.class_names).encode_column(dataset, label_column)
    combiner = predictor.combiner
    label = str(resolved.get("combiner_label") or getattr(combiner, "registry_name", "")
                or type(combiner).__name__)
    fit_split = str((recipe.get("data") or {}).get("fit_split") or "unknown")
    return write_report(directory, logits, labels, {label: combiner}, config=config,
                        title=title, fit_split=fit_split)


def _check_report_directory(directory: Path) -> None:
    """Refuse to replace a folder that is not a report (the working directory, a bundle...)."""
    if directory.is_file():
        raise ConfigError(f"{directory} is a file; give a folder for the report.")
    if (directory.is_dir() and any(directory.iterdir())
            and not (directory / "metrics.json").is_file()):
        raise ConfigError(
            f"{directory} already holds files and is not an earlier report; the report "
            "replaces its folder as a whole, so give a new or empty folder."
        )


# -- rendering -----------------------------------------------------------------------------


def _cell(entry: Mapping[str, float] | None, digits: int = 3) -> str:
    if not entry:
        return "–"
    text = f"{entry['value']:.{digits}f}"
    if not math.isnan(entry.get("low", math.nan)):
        text += f" [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"
    return text


def _leaderboard_rows(result: Mapping[str, Any]) -> list[list[str]]:
    return [[row["model"], *(_cell(row.get(m)) for m in _LEADERBOARD_METRICS)]
            for row in result["leaderboard"]]


def leaderboard_table(result: Mapping[str, Any]) -> str:
    """The leaderboard of a ``metrics.json`` as a fixed-width text table for a terminal."""
    header = ["model", *_LEADERBOARD_METRICS]
    rows = [header, *_leaderboard_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    level = round(100 * result.get("confidence", 0.95))
    lines.append(f"{result['n_examples']} examples; [low, high] = {level}% bootstrap interval "
                 f"({result.get('bootstrap', 0)} resamples); best combiner: "
                 f"{result['best_combiner']}")
    versus = (result.get("versus_best_expert") or {}).get(result["best_combiner"])
    if versus:
        lines.append(f"{result['best_combiner']} vs {versus['expert']}: "
                     f"{_signed_cell(versus['difference'])} accuracy (paired), "
                     f"McNemar p = {versus['mcnemar_p']:.3g}")
    return "\n".join(lines)


def _signed_cell(entry: Mapping[str, float]) -> str:
    text = f"{entry['value']:+.3f}"
    if not math.isnan(entry.get("low", math.nan)):
        text += f" [{entry['low']:+.3f}, {entry['high']:+.3f}]"
    return text


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def render_markdown(result: Mapping[str, Any]) -> str:
    """``report.md`` from the content of ``metrics.json``."""
    level = round(100 * result.get("confidence", 0.95))
    lines = [
        f"# {result['title']}", "",
        f"{result['n_examples']} examples, {len(result['class_names'])} classes, experts: "
        f"{', '.join(result['experts'])}. Combiners were fitted on the "
        f"`{result['fit_split']}` split. Brackets: {level}% percentile bootstrap interval "
        f"({result['bootstrap']} resamples).", "",
        "## Leaderboard", "",
        *_md_table(["model", *_LEADERBOARD_METRICS], _leaderboard_rows(result)), "",
        f"Best combiner: **{result['best_combiner']}**. The oracle row is the share of examples "
        "at least one expert gets right: an upper bound for picking one expert per example.",
        "",
    ]
    versus = result.get("versus_best_expert") or {}
    if versus:
        expert = next(iter(versus.values()))["expert"]
        lines += [f"## Versus the best expert ({expert})", "",
                  "Accuracy difference on the same examples (paired bootstrap interval), "
                  "examples only the combiner gets right (wins) or only the expert (losses), "
                  "and the exact McNemar test.", ""]
        lines += _md_table(["combiner", "accuracy difference", "wins", "losses", "McNemar p"], [
            [label, _signed_cell(v["difference"]), str(v["wins"]), str(v["losses"]),
             f"{v['mcnemar_p']:.3g}"] for label, v in versus.items()])
        lines.append("")
    lines += [
        "## By availability pattern", "",
        "Each row keeps the inputs of the pattern's experts; the other experts are masked "
        "out, as when an example lacks their inputs.", "",
    ]
    patterns = result["patterns"]
    models = list(dict.fromkeys(m for p in patterns.values() for m in p["models"]))
    header = ["pattern", "n", *models]
    rows = [[name, str(p["n"]),
             *(f"{p['models'][m]['accuracy']:.3f}" if m in p["models"] else "–" for m in models)]
            for name, p in patterns.items()]
    lines += ["Accuracy:", "", *_md_table(header, rows), ""]
    lines += _combiner_lines(result.get("combiners") or {})
    lines += [f"## Per class: {result['best_combiner']}", ""]
    lines += _md_table(["class", "precision", "recall", "F1", "support"], [
        [name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
        for name, r in result["per_class"].items()])
    if result.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in result["plots"].items()]
    return "\n".join(lines) + "\n"


def _combiner_lines(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What each combiner chose (``auto``) and the patterns it does not fuse."""
    lines: list[str] = []
    for label, summary in summaries.items():
        if "chose" in summary:
            lines += [f"**{label}** chose **{summary['chose']}** ({summary['why']}).", ""]
            lines += _md_table(["candidate", "CV accuracy", "CV NLL"], [
                [row["name"], f"{row['accuracy']:.3f}" if "accuracy" in row else "skipped",
                 f"{row['nll']:.3f}" if "nll" in row else "–"] for row in summary["cv"]])
            lines.append("")
        rerouted = summary.get("rerouted_patterns") or {}
        if rerouted:
            routes = ", ".join(f"{p} → {r}" for p, r in rerouted.items())
            lines += [f"**{label}** does not fuse these patterns (its pattern guard measured "
                      f"fusion worse there on held-out fit rows): {routes}.", ""]
    return (["## Combiners", "", *lines] if lines else [])


# -- plots ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plots(directory: Path, y: np.ndarray, probas: Mapping[str, np.ndarray], best: str,
           combiners: Mapping[str, Any], logits: Any, *, ece_bins: int) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    plots = {"reliability diagrams": _reliability(directory, y, probas, ece_bins),
             f"confusion matrix: {best}": _confusion(directory, y, probas[best], best,
                                                     tuple(logits.class_names))}
    gated = [label for label, c in combiners.items() if hasattr(c, "gate_weights")]
    if gated:
        plots[f"gate weights by class: {gated[0]}"] = _gates(
            directory, y, combiners[gated[0]], gated[0], logits)
    return plots


def _reliability(directory: Path, y: np.ndarray, probas: Mapping[str, np.ndarray],
                 n_bins: int) -> str:
    plt = _pyplot()
    cols = min(3, len(probas))
    rows = math.ceil(len(probas) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for ax, (model, proba) in zip(axes.flat, probas.items(), strict=False):
        confidence = proba.max(axis=1)
        correct = proba.argmax(axis=1) == y
        bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(counts, 1)
        ax.bar(edges[:-1], np.where(counts > 0, accuracy, 0.0), width=1.0 / n_bins,
               align="edge", edgecolor="black", linewidth=0.4, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.set_title(f"{model}\nECE {metrics.ece(y, proba, n_bins=n_bins):.3f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(probas):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(directory / "reliability.png", dpi=100)
    plt.close(fig)
    return "plots/reliability.png"


def _confusion(directory: Path, y: np.ndarray, proba: np.ndarray, model: str,
               names: tuple[str, ...]) -> str:
    plt = _pyplot()
    n = len(names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y, proba.argmax(axis=1)), 1)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues",
              vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {model}", fontsize=10)
    fig.tight_layout()
    fig.savefig(directory / "confusion.png", dpi=100)
    plt.close(fig)
    return "plots/confusion.png"


def _gates(directory: Path, y: np.ndarray, combiner: Any, label: str, logits: Any) -> str:
    plt = _pyplot()
    weights = combiner.gate_weights(logits)
    both = np.asarray(logits.mask).all(axis=1)
    first = next(iter(combiner.expert_names_))
    names = tuple(logits.class_names)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False,
                             sharex=True)
    for k, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        values = weights[(y == k) & both, 0]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="tab:orange", edgecolor="black",
                linewidth=0.4)
        ax.set_title(f"{name} (n={values.size})", fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel(f"gate weight on {first!r} (rows with every modality)")
    fig.suptitle(f"gate weights by true class: {label}", fontsize=10)
    fig.tight_layout()
    fig.savefig(directory / "gate_weights.png", dpi=100)
    plt.close(fig)
    return "plots/gate_weights.png"
