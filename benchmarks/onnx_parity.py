"""ONNX export parity and accuracy: a bundle against its ONNX export (fp32 and int8) on a
labelled test split, for every availability pattern (both inputs, each input alone).

Usage::

    python benchmarks/onnx_parity.py --bundle runs/quickstart/bundle     # the emoji test split
    python benchmarks/onnx_parity.py --quick                             # the synthetic run

Exports the bundle (with int8 graphs) into a temporary directory, predicts every test row
with the torch predictor and with the ONNX Runtime predictor, and reports per pattern: the
largest |fused probability difference|, whether every argmax is identical, the largest
|logit difference| per expert, and the accuracy of torch, ONNX fp32 and ONNX int8. Writes
``benchmarks/results/onnx_parity.json`` and (full runs) the table in ``docs/export.md``
between the ``onnx_parity`` markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from predict_overhead import update_doc  # run as a script: benchmarks/ is on sys.path

from ensemble import FusionPredictor
from ensemble._io import library_versions, write_json
from ensemble.data import load_emoji, make_synthetic
from ensemble.runtime import OnnxPredictor

RESULTS = Path(__file__).with_name("results")
DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"
MARKER = "onnx_parity"
FUSED_TOLERANCE = 1e-4


def _patterns(predictor: FusionPredictor, test: Any) -> dict[str, dict[str, list[Any]]]:
    """Inputs of every test row with all columns, then with each column alone."""
    columns = {column: list(test.with_format(None)[column]) if column != "image"
               else list(test[column]) for column in predictor.columns}
    patterns = {"all inputs": columns}
    for column in columns:
        patterns[f"{column} only"] = {c: v if c == column else [None] * len(v)
                                      for c, v in columns.items()}
    return patterns


def _speed(predictor: FusionPredictor, onnx: dict[str, OnnxPredictor],
           inputs: dict[str, list[Any]], rounds: int) -> dict[str, Any]:
    """rows/s of ``predict_proba`` on every test row: torch, ONNX fp32, ONNX int8, in
    interleaved rounds (order reversed every other round); ratios are medians of per-round
    ratios against torch."""
    contenders = {"torch": predictor, **{f"onnx {p}": o for p, o in onnx.items()}}
    for contender in contenders.values():  # warm-up
        contender.predict_proba({c: v[:8] for c, v in inputs.items()})
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = list(contenders) if round_index % 2 == 0 else list(contenders)[::-1]
        for name in order:
            started = time.perf_counter()
            contenders[name].predict_proba(inputs)
            seconds[name].append(time.perf_counter() - started)
    n_rows = len(next(iter(inputs.values())))
    return {name: {"rows_per_second": round(n_rows / statistics.median(times), 1),
                   "ratio_to_torch": round(statistics.median(
                       [t / s for t, s in zip(seconds["torch"], times, strict=True)]), 3)}
            for name, times in seconds.items()} | {"rounds": rounds}


def measure(bundle: Path, test: Any, workdir: Path, rounds: int = 3) -> dict[str, Any]:
    predictor = FusionPredictor.load(bundle)
    started = time.perf_counter()
    export = predictor.export(workdir / "onnx", quantize=True)
    export_seconds = time.perf_counter() - started
    onnx = {p: OnnxPredictor.load(export, precision=p) for p in ("fp32", "int8")}
    labels = np.asarray([predictor.class_names.index(str(name)) for name in
                         _label_names(test)])
    rows = {}
    for pattern, inputs in _patterns(predictor, test).items():
        reference = predictor.logits(inputs)
        torch_proba = predictor.combiner.predict_proba(reference)
        row: dict[str, Any] = {"rows": int(labels.size),
                               "accuracy": {"torch": _accuracy(torch_proba, labels)}}
        for precision, onnx_predictor in onnx.items():
            logits = onnx_predictor.logits(inputs)
            proba = onnx_predictor.combiner.predict_proba(logits)
            row["accuracy"][f"onnx {precision}"] = _accuracy(proba, labels)
            row[precision] = {
                "max_abs_proba_diff": float(np.abs(proba - torch_proba).max()),
                "argmax_identical": bool((proba.argmax(1) == torch_proba.argmax(1)).all()),
                "argmax_flips": int((proba.argmax(1) != torch_proba.argmax(1)).sum()),
                "max_abs_logit_diff": {
                    name: float(np.abs(logits.logits[name] - reference.logits[name]).max())
                    for name in reference.expert_names},
            }
        rows[pattern] = row
    fp32 = [row["fp32"] for row in rows.values()]
    speed = _speed(predictor, onnx, _patterns(predictor, test)["all inputs"], rounds)
    return {
        "speed": speed,
        "bundle": str(bundle),
        "export_seconds": round(export_seconds, 1),
        "export_bytes": {p.relative_to(export).as_posix(): p.stat().st_size
                         for p in sorted(export.rglob("*.onnx"))},
        "patterns": rows,
        "fp32_within_tolerance": bool(all(r["max_abs_proba_diff"] <= FUSED_TOLERANCE
                                          and r["argmax_identical"] for r in fp32)),
        "tolerance": FUSED_TOLERANCE,
    }


def _label_names(test: Any) -> list[str]:
    feature = test.features["label"]
    values = test["label"]
    return [feature.int2str(v) if hasattr(feature, "int2str") else str(v) for v in values]


def _accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
    return round(float((proba.argmax(axis=1) == labels).mean()), 4)


def markdown(result: dict[str, Any]) -> str:
    lines = ["| rows | accuracy torch | ONNX fp32 | ONNX int8 | fp32: max abs Δ fused proba "
             "| fp32: argmax identical | fp32: max abs Δ logit | int8: max abs Δ fused proba "
             "| int8: argmax flips |",
             "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: |"]
    for pattern, row in result["patterns"].items():
        accuracy = row["accuracy"]
        lines.append(
            f"| {pattern} ({row['rows']}) | {accuracy['torch']:.3f} | "
            f"{accuracy['onnx fp32']:.3f} | {accuracy['onnx int8']:.3f} | "
            f"{row['fp32']['max_abs_proba_diff']:.1e} | "
            f"{'yes' if row['fp32']['argmax_identical'] else 'no'} | "
            f"{max(row['fp32']['max_abs_logit_diff'].values()):.1e} | "
            f"{row['int8']['max_abs_proba_diff']:.1e} | {row['int8']['argmax_flips']} |")
    sizes = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size
                      in result["export_bytes"].items())
    speed = result["speed"]
    lines += ["", "| `predict_proba`, every test row, all inputs | rows/s | × torch |",
              "| --- | ---: | ---: |"]
    lines += [f"| {name} | {speed[name]['rows_per_second']:.1f} | "
              f"{speed[name]['ratio_to_torch']:.2f} |"
              for name in ("torch", "onnx fp32", "onnx int8")]
    lines += ["", f"Median of {speed['rounds']} interleaved rounds. Export (with int8 graphs) "
              f"took {result['export_seconds']:.0f} s; graphs: "
              f"{sizes}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("runs/quickstart/bundle"))
    parser.add_argument("--quick", action="store_true",
                        help="the bundle is a synthetic-recipe run's; test on generated rows")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        test = make_synthetic(n_train=96, n_validation=64, n_test=64, noise=0.1)["test"]
    else:
        test = load_emoji()["test"]
    with tempfile.TemporaryDirectory() as workdir:
        result = measure(args.bundle, test, Path(workdir), args.rounds)
    output = {"benchmark": "onnx_parity", "quick": args.quick, "cpu_count": os.cpu_count(),
              "versions": library_versions(), **result}
    out = args.out or RESULTS / ("onnx_parity_quick.json" if args.quick else "onnx_parity.json")
    write_json(out, output)
    table = markdown(output)
    print(table)
    print(f"\nwrote {out}")
    if not (args.quick or args.no_doc):
        print(f"{'updated' if update_doc(DOC, MARKER, table) else 'no markers in'} {DOC}")
    return output


if __name__ == "__main__":
    main()
