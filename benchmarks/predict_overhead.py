"""Inference overhead: FusionPredictor.predict against the raw forward of both backbones.

Usage::

    python benchmarks/predict_overhead.py                 # EfficientNet-Lite0 + MiniLM, emoji rows
    python benchmarks/predict_overhead.py --bundle DIR    # a saved predictor (trained heads)
    python benchmarks/predict_overhead.py --quick         # tiny models (the test suite)

Everything runs in one process, on the same rows, contenders interleaved round by round
(order reversed every other round) so that drift on a shared machine hits them alike; the
tables give medians over the rounds, and every ratio is the median of per-round ratios
against a contender of the same round.

- **Throughput**: rows/s of ``predictor.predict(images=..., texts=...)`` on a batch of PIL
  images and strings, against *the limit*: the raw forward of both backbones (the modules
  the experts hold) under ``torch.inference_mode`` on already-preprocessed tensors, batched
  as the predictor batches, plus ``combiner.predict_proba`` on the resulting logits. Target
  >= 0.95x. Preprocessing (the image transform, the tokenizer) is timed on its own, so the
  gap between the two shows where it comes from.
- **Latency**: p50 / p95 of ``predict`` for one image + text pair, against the raw forward of
  one preprocessed pair.
- **Experiments**: variants of ``predict`` on the same rows, as a ratio to the library
  default: the image model's memory layout (NCHW / channels_last), bfloat16 autocast,
  ``torch.set_num_threads(1)``; each with its logits compared to float32 NCHW on the same
  inputs (max |logit difference|, argmax agreement per expert and fused). ``torch.compile``
  of both backbones is timed on the raw forward (compile seconds, ratio to eager). Text
  preprocessing is timed per row, per batch (what the expert does) and pre-tokenised all at
  once.

- **ONNX Runtime** (issue 13; when the ``export`` extra is installed, ``--no-onnx`` skips
  it): the predictor exported with :meth:`FusionPredictor.export` (with int8 graphs) and
  loaded as :class:`~ensemble.runtime.OnnxPredictor`, timed in the same rounds:
  ``predict`` with the float32 and the int8 graphs, and *the ONNX limit*: the raw ONNX
  Runtime forward of both graphs on already-preprocessed arrays + the combiner graph.
  Targets: ONNX fp32 ``predict`` >= 1.5x torch ``predict`` rows/s, and >= 0.95x its own
  limit. Agreement with torch (max |logit diff|, argmax agreement) per graph precision.

Writes ``benchmarks/results/predict_overhead.json`` (atomically; ``--quick``:
``predict_overhead_quick.json``), prints the tables, and (full runs) rewrites the tables in
``docs/benchmarks.md`` between the ``predict_overhead`` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import contextlib
import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemble import FusionPredictor
from ensemble._io import atomic_write_text, library_versions, write_json
from ensemble.combiners import create_combiner
from ensemble.data import class_names, load_emoji, make_synthetic
from ensemble.experts import ImageExpert, TextExpert
from ensemble.logits import LogitSet
from ensemble.testing import build_tiny_text_checkpoint

RESULTS = Path(__file__).with_name("results")
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MARKER = "predict_overhead"
IMAGE_CHECKPOINT = "timm/tf_efficientnet_lite0.in1k"
TEXT_CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"
QUICK_IMAGE_CHECKPOINT = "test_efficientnet"
TARGET = 0.95
PREDICT = "predict"
LIMIT = "limit: raw forward + combiner"
PREP_IMAGE = "preprocessing: image transform"
PREP_TEXT = "preprocessing: tokenisation"
DEFAULT = "default"
ONE_PREDICT = "predict, one image + text"
ONE_BF16 = "predict, one pair, bf16 autocast"
ONE_LIMIT = "raw forward + combiner, one preprocessed pair"
ONNX_PREDICT = "ONNX Runtime predict (fp32)"
ONNX_INT8 = "ONNX Runtime predict (int8)"
ONNX_LIMIT = "ONNX limit: raw ONNX forward + combiner graph"
ONE_ONNX = "ONNX predict (fp32), one image + text"
ONE_ONNX_LIMIT = "ONNX raw forward + combiner graph, one preprocessed pair"
ONNX_TARGETS = {"onnx_vs_torch_predict": 1.5, "onnx_predict_vs_onnx_limit": 0.95}


# -- setup -----------------------------------------------------------------------------------

@dataclass
class Setup:
    """The predictor under test and the raw inputs it is timed on."""

    predictor: FusionPredictor
    images: list[Any]
    texts: list[str]
    description: dict[str, Any]
    # Per image expert: the model in each memory layout ("contiguous", "channels_last").
    layouts: dict[str, dict[str, torch.nn.Module]] = field(default_factory=dict)
    # The exported predictor, by graph precision ("fp32", "int8"); empty without --onnx.
    onnx: dict[str, Any] = field(default_factory=dict)


def _rows(quick: bool, n: int) -> tuple[list[Any], list[str], list[str], str]:
    """``n`` images and texts: the emoji test split when it loads, else generated rows."""
    if not quick:
        try:
            ds = load_emoji()
            source = "emoji dataset (test split)"
        except Exception as err:  # no cache and no npm: generated rows instead
            print(f"emoji dataset unavailable ({err}); using generated rows")
            ds, source = make_synthetic(n_test=n, image_size=64), "generated (make_synthetic)"
    else:
        ds, source = make_synthetic(n_test=n), "generated (make_synthetic)"
    split = ds["test"]
    picked = split.select([i % len(split) for i in range(n)])
    return list(picked["image"]), list(picked["text"]), class_names(ds), source


def _random_stacking(names: Sequence[str], quick: bool) -> Any:
    """A stacking combiner fitted on random logits: its predict cost is what counts here."""
    rng = np.random.default_rng(0)
    logits = {m: rng.normal(size=(200, len(names))).astype(np.float32) for m in ("image", "text")}
    params = {"Cs": (1.0,)} if quick else {}
    return create_combiner("stacking", **params).fit(
        LogitSet(logits, list(names)), rng.integers(0, len(names), 200))


def build(args: argparse.Namespace, workdir: Path) -> Setup:
    images, texts, names, source = _rows(args.quick, args.rows)
    if args.bundle:
        predictor = FusionPredictor.load(args.bundle)
        predictor.batch_size = args.batch_size
        bagged = [n for n, e in predictor.experts.items() if not hasattr(e, "model")]
        if bagged:
            raise SystemExit(f"{args.bundle}: experts {bagged} are bagged (cross-fitted); this "
                             "benchmark times single experts; use a bundle of a recipe "
                             "without cross_fit.")
    else:
        if args.quick:
            words = {w for text in texts for w in text.split()}
            experts = {
                "image": ImageExpert(QUICK_IMAGE_CHECKPOINT, names, pretrained=False,
                                     image_size=32),
                "text": TextExpert(str(build_tiny_text_checkpoint(workdir / "tiny", words)),
                                   names),
            }
        else:
            experts = {"image": ImageExpert(IMAGE_CHECKPOINT, names, image_size=112),
                       "text": TextExpert(TEXT_CHECKPOINT, names, max_length=32)}
        predictor = FusionPredictor(experts, _random_stacking(names, args.quick),
                                    batch_size=args.batch_size)
    layouts = {}
    for name, expert in predictor.experts.items():
        if expert.modality == "image":
            layouts[name] = {
                _layout(expert.model): expert.model,
                **{layout: copy.deepcopy(expert.model).to(memory_format=fmt)
                   for layout, fmt in (("contiguous", torch.contiguous_format),
                                       ("channels_last", torch.channels_last))
                   if layout != _layout(expert.model)},
            }
    description = {
        "data": source,
        "rows": len(images),
        "batch_size": predictor.batch_size,
        "bundle": str(args.bundle) if args.bundle else None,
        "heads": "trained (bundle)" if args.bundle else "untrained (random init)",
        "experts": {name: {"checkpoint": e.checkpoint, "type": type(e).__name__,
                           **({"image_size": e.data_config["input_size"][-1],
                               "default_layout": _layout(e.model)}
                              if e.modality == "image" else {"max_length": e.max_length})}
                    for name, e in predictor.experts.items()},
        "combiner": type(predictor.combiner).__name__,
    }
    onnx = _export(predictor, workdir, args.batch_size) if args.onnx else {}
    return Setup(predictor, images, texts, description, layouts, onnx)


def _export(predictor: FusionPredictor, workdir: Path, batch_size: int) -> dict[str, Any]:
    from ensemble.runtime import OnnxPredictor

    started = time.perf_counter()
    directory = predictor.export(workdir / "onnx", quantize=True)
    print(f"exported to ONNX (with int8 graphs) in {time.perf_counter() - started:.1f} s")
    loaded = {precision: OnnxPredictor.load(directory, precision=precision)
              for precision in ("fp32", "int8")}
    for onnx_predictor in loaded.values():
        onnx_predictor.batch_size = batch_size
    return loaded


def _layout(model: torch.nn.Module) -> str:
    weights = [p for p in model.parameters() if p.dim() == 4]
    if weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
        return "channels_last"
    return "contiguous"


# -- contenders --------------------------------------------------------------------------------

def _batches(setup: Setup) -> dict[str, list[dict[str, Any]]]:
    """Every expert's inputs, preprocessed once and batched as the predictor batches them."""
    size = setup.predictor.batch_size
    out = {}
    for name, expert in setup.predictor.experts.items():
        values = setup.images if expert.modality == "image" else setup.texts
        out[name] = [_collate(expert, values[i:i + size]) for i in range(0, len(values), size)]
    return out


def _collate(expert: Any, values: Sequence[Any]) -> dict[str, Any]:
    return expert.collate_inputs(list(values), [str(i) for i in range(len(values))],
                                  train=False)


def _forward_logits(setup: Setup, batches: Mapping[str, list[dict[str, Any]]],
                    models: Mapping[str, Callable[..., Any]] | None = None
                    ) -> dict[str, np.ndarray]:
    """The raw forward of every backbone under ``inference_mode``: logits per expert."""
    logits = {}
    with torch.inference_mode():
        for name, expert in setup.predictor.experts.items():
            model = (models or {}).get(name, expert.model)
            logits[name] = torch.cat([expert.forward(model, batch).float()
                                      for batch in batches[name]]).numpy()
    return logits


def _limit(setup: Setup, batches: Mapping[str, list[dict[str, Any]]]) -> np.ndarray:
    return setup.predictor.combiner.predict_proba(_forward_logits(setup, batches))


def _prep(setup: Setup, modality: str) -> None:
    size = setup.predictor.batch_size
    for expert in setup.predictor.experts.values():
        if expert.modality == modality:
            values = setup.images if modality == "image" else setup.texts
            for i in range(0, len(values), size):
                _collate(expert, values[i:i + size])


@dataclass(frozen=True)
class Variant:
    """A way to run ``predict``: image-model layout, precision, torch threads."""

    name: str
    layout: str | None = None   # None: whatever the predictor holds
    precision: str = "fp32"
    threads: int | None = None


def _variants(setup: Setup) -> list[Variant]:
    variants = [Variant(DEFAULT), Variant("bf16 autocast", precision="bf16")]
    default_layout = _default_layout(setup)
    if default_layout is not None:  # an image expert: try the other memory layout too
        other = "contiguous" if default_layout == "channels_last" else "channels_last"
        variants[1:1] = [Variant(f"{_LAYOUT_NAMES[other]} image model", layout=other)]
        variants.append(Variant(f"bf16 autocast + {_LAYOUT_NAMES[other]} image model",
                                layout=other, precision="bf16"))
    if torch.get_num_threads() != 1:
        variants.append(Variant("torch.set_num_threads(1)", threads=1))
    return variants


_LAYOUT_NAMES = {"contiguous": "NCHW", "channels_last": "channels_last"}


@contextlib.contextmanager
def _applied(setup: Setup, variant: Variant) -> Iterator[None]:
    predictor = setup.predictor
    saved_models = {name: predictor.experts[name].model for name in setup.layouts}
    saved_precision, saved_threads = predictor.precision, torch.get_num_threads()
    try:
        if variant.layout is not None:
            for name, models in setup.layouts.items():
                predictor.experts[name].model = models[variant.layout]
        predictor.precision = variant.precision
        if variant.threads is not None:
            torch.set_num_threads(variant.threads)
        yield
    finally:
        for name, model in saved_models.items():
            predictor.experts[name].model = model
        predictor.precision = saved_precision
        torch.set_num_threads(saved_threads)


def _predict(setup: Setup, variant: Variant) -> None:
    with _applied(setup, variant):
        setup.predictor.predict(images=setup.images, texts=setup.texts)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- ONNX Runtime ------------------------------------------------------------------------------

def _onnx_batches(setup: Setup, values_of: Callable[[Any], list[Any]]
                  ) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every ONNX expert's inputs, preprocessed once, batched as its predictor batches."""
    onnx_predictor = setup.onnx["fp32"]
    size = onnx_predictor.batch_size
    out = {}
    for name, expert in onnx_predictor.experts.items():
        values = values_of(expert)
        chunks = [values[i:i + size] for i in range(0, len(values), size)]
        out[name] = [expert.preprocess(chunk, [str(j) for j in range(len(chunk))])
                     for chunk in chunks]
    return out


def _onnx_limit(setup: Setup, batches: Mapping[str, list[dict[str, np.ndarray]]]) -> np.ndarray:
    """The raw ONNX Runtime forward of every graph + the combiner graph."""
    onnx_predictor = setup.onnx["fp32"]
    logits, features = {}, {}
    for name, expert in onnx_predictor.experts.items():
        outputs = [expert.forward(batch) for batch in batches[name]]
        logits[name] = np.concatenate([o[0] for o in outputs])
        features[name] = np.concatenate([o[1] for o in outputs])
    return onnx_predictor.combiner.predict_proba(
        LogitSet(logits, list(onnx_predictor.class_names), features=features))


def _onnx_agreement(setup: Setup) -> dict[str, Any]:
    """ONNX Runtime against torch on the same rows: logits and fused argmax, per precision."""
    predictor = setup.predictor
    logit_set = predictor.logits(images=setup.images, texts=setup.texts)
    reference = (dict(logit_set.logits), predictor.combiner.predict_proba(logit_set))
    out = {}
    for precision, onnx_predictor in setup.onnx.items():
        onnx_set = onnx_predictor.logits(images=setup.images, texts=setup.texts)
        proba = onnx_predictor.combiner.predict_proba(onnx_set)
        out[precision] = {**_agreement(reference, (dict(onnx_set.logits), proba)),
                          "max_abs_proba_diff": float(np.abs(proba - reference[1]).max())}
    return out


# -- latency -----------------------------------------------------------------------------------

def _latency_contenders(setup: Setup) -> dict[str, Callable[[], Any]]:
    predictor = setup.predictor
    image, text = setup.images[0], setup.texts[0]
    one = {name: [_collate(expert, [image if expert.modality == "image" else text])]
           for name, expert in predictor.experts.items()}
    bf16 = Variant("bf16", precision="bf16")

    def predict_bf16() -> None:
        with _applied(setup, bf16):
            predictor.predict(images=image, texts=text)

    contenders = {
        ONE_PREDICT: lambda: predictor.predict(images=image, texts=text),
        ONE_LIMIT: lambda: _limit(setup, one),
        ONE_BF16: predict_bf16,
    }
    if setup.onnx:
        onnx_one = _onnx_batches(setup, lambda e: [image if e.modality == "image" else text])
        contenders[ONE_ONNX] = lambda: setup.onnx["fp32"].predict(images=image, texts=text)
        contenders[ONE_ONNX_LIMIT] = lambda: _onnx_limit(setup, onnx_one)
    return contenders


# -- agreement -----------------------------------------------------------------------------------

def _logits_under(setup: Setup, variant: Variant) -> tuple[dict[str, np.ndarray], np.ndarray]:
    predictor = setup.predictor
    with _applied(setup, variant):
        logit_set = predictor.logits(images=setup.images, texts=setup.texts)
    return dict(logit_set.logits), predictor.combiner.predict_proba(logit_set)


def _agreement(reference: tuple[dict[str, np.ndarray], np.ndarray],
               other: tuple[dict[str, np.ndarray], np.ndarray]) -> dict[str, Any]:
    (ref_logits, ref_proba), (logits, proba) = reference, other
    return {
        "max_abs_logit_diff": {m: float(np.abs(logits[m] - ref_logits[m]).max())
                               for m in ref_logits},
        "argmax_agreement": {
            **{m: float((logits[m].argmax(1) == ref_logits[m].argmax(1)).mean())
               for m in ref_logits},
            "fused": float((proba.argmax(1) == ref_proba.argmax(1)).mean()),
        },
    }


# -- torch.compile -----------------------------------------------------------------------------

def _compile_experiment(setup: Setup, batches: Mapping[str, list[dict[str, Any]]],
                        rounds: int) -> dict[str, Any]:
    """Both backbones through ``torch.compile`` (default mode), timed on the raw forward.

    Compiled with an empty inductor cache (a temporary ``TORCHINDUCTOR_CACHE_DIR``), so the
    compile time is what a fresh machine pays, not a warm cache's.
    """
    eager = _forward_logits(setup, batches)
    saved_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            torch._dynamo.reset()
            started = time.perf_counter()
            compiled = {name: torch.compile(e.model)
                        for name, e in setup.predictor.experts.items()}
            first = _forward_logits(setup, batches, compiled)  # compiles every shape it meets
            compile_seconds = time.perf_counter() - started
    except Exception as err:  # no compiler, unsupported op, ...: say so, do not fail the run
        return {"works": False, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    finally:
        if saved_cache is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved_cache
    ratios, rates = [], []
    n_rows = len(setup.images)
    for round_index in range(rounds):
        pair = [("eager", None), ("compiled", compiled)]
        timings = {}
        for label, models in (pair if round_index % 2 == 0 else pair[::-1]):
            timings[label] = _timed(lambda models=models: _forward_logits(setup, batches, models))
        ratios.append(timings["eager"] / timings["compiled"])
        rates.append(n_rows / timings["compiled"])
    combiner = setup.predictor.combiner
    agreement = _agreement((eager, combiner.predict_proba(eager)),
                           (first, combiner.predict_proba(first)))
    return {"works": True, "compile_seconds": round(compile_seconds, 1),
            "forward_rows_per_second": round(statistics.median(rates), 2),
            "ratio_to_eager_forward": round(statistics.median(ratios), 3), **agreement}


# -- tokenizer batching --------------------------------------------------------------------------

def _tokenizer_experiment(setup: Setup, rounds: int) -> dict[str, Any] | None:
    expert = next((e for e in setup.predictor.experts.values() if e.modality == "text"), None)
    if expert is None:
        return None
    texts, size = setup.texts, setup.predictor.batch_size
    ways: dict[str, Callable[[], Any]] = {
        "per row": lambda: [_collate(expert, [t]) for t in texts],
        f"per batch of {size} (the expert's collate)": lambda: _prep(setup, "text"),
        "all rows at once (pre-tokenised)": lambda: _collate(expert, texts),
    }
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, fn in ways.items():
            times[way].append(_timed(fn))
    return {way: round(statistics.median(t) * 1000 / len(texts), 4) for way, t in times.items()}


# -- the run -------------------------------------------------------------------------------------

def run(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    batches = _batches(setup)
    variants = _variants(setup)
    throughput: dict[str, Callable[[], Any]] = {
        PREDICT: lambda: setup.predictor.predict(images=setup.images, texts=setup.texts),
        LIMIT: lambda: _limit(setup, batches),
        PREP_IMAGE: lambda: _prep(setup, "image"),
        PREP_TEXT: lambda: _prep(setup, "text"),
    }
    experiments = {v.name: (lambda v=v: _predict(setup, v)) for v in variants if v.name != DEFAULT}
    if setup.onnx:
        onnx_batches = _onnx_batches(
            setup, lambda e: setup.images if e.modality == "image" else setup.texts)
        throughput[ONNX_PREDICT] = lambda: setup.onnx["fp32"].predict(images=setup.images,
                                                                     texts=setup.texts)
        throughput[ONNX_INT8] = lambda: setup.onnx["int8"].predict(images=setup.images,
                                                                   texts=setup.texts)
        throughput[ONNX_LIMIT] = lambda: _onnx_limit(setup, onnx_batches)
    latency = _latency_contenders(setup)
    contenders = {**throughput, **experiments}
    for fn in [*contenders.values(), *latency.values()]:  # warm-up: lazy init, kernel caches
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    latencies: dict[str, list[float]] = {name: [] for name in latency}
    for round_index in range(args.rounds):
        order = list(contenders) if round_index % 2 == 0 else list(contenders)[::-1]
        for name in order:
            seconds[name].append(_timed(contenders[name]))
        for name in (latency if round_index % 2 == 0 else list(latency)[::-1]):
            latencies[name].extend(_timed(latency[name]) for _ in range(args.latency_calls))
        print(f"round {round_index + 1}/{args.rounds}: predict "
              f"{len(setup.images) / seconds[PREDICT][-1]:.1f} rows/s, limit "
              f"{len(setup.images) / seconds[LIMIT][-1]:.1f} rows/s", flush=True)
    n_rows = len(setup.images)

    def summary(name: str, against: str) -> dict[str, Any]:
        rates = [n_rows / s for s in seconds[name]]
        return {"rows_per_second": round(statistics.median(rates), 2),
                "ms_per_row": round(statistics.median(seconds[name]) * 1000 / n_rows, 3),
                f"ratio_to_{'limit' if against == LIMIT else 'default'}": round(statistics.median(
                    [seconds[against][i] / s for i, s in enumerate(seconds[name])]), 3),
                "all_rows_per_second": [round(r, 2) for r in rates]}

    pipeline = [seconds[LIMIT][i] + seconds[PREP_IMAGE][i] + seconds[PREP_TEXT][i]
                for i in range(args.rounds)]
    results_throughput = {name: summary(name, LIMIT) for name in throughput}
    results_throughput[PREDICT]["ratio_to_limit_plus_preprocessing"] = round(statistics.median(
        [p / s for p, s in zip(pipeline, seconds[PREDICT], strict=True)]), 3)
    ratio = results_throughput[PREDICT]["ratio_to_limit"]
    reference = _logits_under(setup, Variant("fp32 NCHW", layout="contiguous"))
    seconds[DEFAULT] = seconds[PREDICT]
    results_experiments = []
    for variant in variants:
        row = summary(variant.name if variant.name != DEFAULT else PREDICT, DEFAULT)
        results_experiments.append({
            "name": variant.name,
            "settings": {"image_layout": variant.layout or _default_layout(setup),
                         "precision": variant.precision,
                         "torch_threads": variant.threads or torch.get_num_threads()},
            **row,
            **_agreement(reference, _logits_under(setup, variant)),
        })
    onnx_result = None
    if setup.onnx:
        def ratio_to(name: str, against: str) -> float:
            return round(statistics.median(
                [seconds[against][i] / s for i, s in enumerate(seconds[name])]), 3)

        speedup = ratio_to(ONNX_PREDICT, PREDICT)
        own = ratio_to(ONNX_PREDICT, ONNX_LIMIT)
        onnx_result = {
            "ratio_to_torch_predict": {name: ratio_to(name, PREDICT)
                                       for name in (ONNX_PREDICT, ONNX_INT8, ONNX_LIMIT)},
            "onnx_predict_vs_onnx_limit": own,
            "int8_vs_fp32_predict": ratio_to(ONNX_INT8, ONNX_PREDICT),
            "targets": {**ONNX_TARGETS,
                        "met": bool(speedup >= ONNX_TARGETS["onnx_vs_torch_predict"]
                                    and own >= ONNX_TARGETS["onnx_predict_vs_onnx_limit"])},
            "agreement_with_torch": _onnx_agreement(setup),
        }
    return {
        "onnx": onnx_result,
        "throughput": results_throughput,
        "target": {"predict_vs_limit": TARGET, "ratio": ratio,
                   "met": bool(ratio >= TARGET)},
        "latency_ms": {name: {"p50": round(float(np.percentile(v, 50)) * 1000, 2),
                              "p95": round(float(np.percentile(v, 95)) * 1000, 2),
                              "calls": len(v)}
                       for name, v in latencies.items()},
        "experiments": results_experiments,
        "agreement_reference": "fp32, NCHW image model, same inputs",
        "tokenizer_ms_per_row": _tokenizer_experiment(setup, args.rounds),
        "compile": ({"works": None, "skipped": "--quick" if args.quick else "--no-compile"}
                    if not args.compile else _compile_experiment(setup, batches, args.rounds)),
    }


def _default_layout(setup: Setup) -> str | None:
    return next((_layout(e.model) for e in setup.predictor.experts.values()
                 if e.modality == "image"), None)


# -- reporting -------------------------------------------------------------------------------------

def markdown(result: Mapping[str, Any]) -> str:
    """The tables of a result (as returned, or read back from its JSON, keys sorted)."""
    lines = ["| contender | rows/s | ms/row | × limit |", "| --- | ---: | ---: | ---: |"]
    for name in (LIMIT, PREDICT, PREP_IMAGE, PREP_TEXT):
        row = result["throughput"][name]
        label = f"**{name}**" if name == PREDICT else name
        ratio = (f"{row['ratio_to_limit']:.3f}" if name in (LIMIT, PREDICT)
                 else f"({100 / row['ratio_to_limit']:.1f}% of the limit's time)")
        lines.append(f"| {label} | {row['rows_per_second']:.1f} | {row['ms_per_row']:.2f} | "
                     f"{ratio} |")
    onnx = result.get("onnx")
    if onnx:
        lines += ["", "| ONNX Runtime contender | rows/s | ms/row | × torch `predict` |",
                  "| --- | ---: | ---: | ---: |"]
        for name in (ONNX_LIMIT, ONNX_PREDICT, ONNX_INT8):
            row = result["throughput"][name]
            label = f"**{name}**" if name == ONNX_PREDICT else name
            lines.append(f"| {label} | {row['rows_per_second']:.1f} | {row['ms_per_row']:.2f} | "
                         f"{onnx['ratio_to_torch_predict'][name]:.3f} |")
        agreement = onnx["agreement_with_torch"]
        lines += ["", f"ONNX `predict` (fp32) against its own limit: "
                  f"{onnx['onnx_predict_vs_onnx_limit']:.3f}× (target "
                  f"{ONNX_TARGETS['onnx_predict_vs_onnx_limit']}); against torch `predict`: "
                  f"{onnx['ratio_to_torch_predict'][ONNX_PREDICT]:.3f}× (target "
                  f"{ONNX_TARGETS['onnx_vs_torch_predict']}). Against torch on the same rows: "
                  + "; ".join(
                      f"{precision} max |logit diff| "
                      f"{max(a['max_abs_logit_diff'].values()):.2g}, max |proba diff| "
                      f"{a['max_abs_proba_diff']:.2g}, fused argmax agreement "
                      f"{a['argmax_agreement']['fused']:.3f}"
                      for precision, a in agreement.items()) + "."]
    ratio = result["throughput"][PREDICT]["ratio_to_limit_plus_preprocessing"]
    lines += ["", f"`predict` against limit + preprocessing (what a hand-written pipeline "
              f"costs): {ratio:.3f}×.", "",
              "| single example | p50 ms | p95 ms |", "| --- | ---: | ---: |"]
    for name in (ONE_LIMIT, ONE_PREDICT, ONE_BF16, ONE_ONNX_LIMIT, ONE_ONNX):
        if name not in result["latency_ms"]:
            continue
        row = result["latency_ms"][name]
        lines.append(f"| {name} | {row['p50']:.1f} | {row['p95']:.1f} |")
    columns = _agreement_columns(result["experiments"][0]["argmax_agreement"])
    lines += ["", "| `predict` variant | rows/s | × default | max abs logit diff | "
              f"argmax agreement ({' / '.join(columns)}) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for row in result["experiments"]:
        diff = max(row["max_abs_logit_diff"].values())
        agree = " / ".join(f"{row['argmax_agreement'][c]:.3f}" for c in columns)
        lines.append(f"| {row['name']} | {row['rows_per_second']:.1f} | "
                     f"{row['ratio_to_default']:.3f} | {diff:.2g} | {agree} |")
    compiled = result["compile"]
    if compiled.get("works"):
        diff = max(compiled["max_abs_logit_diff"].values())
        agree = " / ".join(f"{compiled['argmax_agreement'][c]:.3f}" for c in columns)
        lines.append(f"| `torch.compile`, both backbones: raw forward (first call, compiling: "
                     f"{compiled['compile_seconds']:.0f} s) | "
                     f"{compiled['forward_rows_per_second']:.1f} | "
                     f"{compiled['ratio_to_eager_forward']:.3f} × eager forward | {diff:.2g} | "
                     f"{agree} |")
    elif compiled.get("works") is False:
        lines.append(f"| `torch.compile` | failed: {compiled['error'][:80]} | | | |")
    tokenizer = result.get("tokenizer_ms_per_row")
    if tokenizer:
        lines += ["", "| tokenisation | ms/row |", "| --- | ---: |"]
        lines += [f"| {way} | {ms:.3f} |"
                  for way, ms in sorted(tokenizer.items(), key=lambda item: -item[1])]
    return "\n".join(lines)


def _agreement_columns(agreement: Mapping[str, float]) -> list[str]:
    """The experts in their order, then ``fused``."""
    return [*(name for name in agreement if name != "fused"), "fused"]


def update_doc(path: Path, name: str, text: str) -> bool:
    """Replace what stands between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in
    ``path``; ``False`` (file untouched) when the markers are missing."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = path.read_text(encoding="utf-8") if path.is_file() else ""
    head, found, rest = doc.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        return False
    atomic_write_text(path, f"{head}{begin}\n{text}\n{end}{tail}")
    return True


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, for smoke tests")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="a saved FusionPredictor bundle (default: build untrained experts)")
    parser.add_argument("--rows", type=int, default=None, help="rows per throughput call")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--latency-calls", type=int, default=None,
                        help="single-example calls per round")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="time torch.compile (default: on, off with --quick)")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=None,
                        help="time the ONNX Runtime export too (default: on when the export "
                             "extra is installed)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path")
    parser.add_argument("--doc", type=Path, default=None,
                        help=f"markdown file whose {MARKER} markers get the tables "
                             "(default: docs/benchmarks.md; none with --quick)")
    parser.add_argument("--no-doc", action="store_true", help="leave the markdown file alone")
    args = parser.parse_args(argv)
    args.rows = args.rows or (16 if args.quick else 128)
    args.rounds = args.rounds or (2 if args.quick else 9)
    args.latency_calls = args.latency_calls or (3 if args.quick else 20)
    args.compile = (not args.quick) if args.compile is None else args.compile
    if args.onnx is None:
        import importlib.util

        args.onnx = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        setup = build(args, Path(workdir))
        result = run(setup, args)
    output = {
        "benchmark": "predict_overhead",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": {**setup.description, "rounds": args.rounds,
                  "latency_calls_per_round": args.latency_calls},
        "limit": ("raw forward of both backbones under torch.inference_mode on preprocessed "
                  "tensors, batched as predict batches, + combiner.predict_proba"),
        "versions": library_versions(),
        **result,
    }
    out = args.out or RESULTS / ("predict_overhead_quick.json" if args.quick
                                 else "predict_overhead.json")
    write_json(out, output)
    table = markdown(output)
    print(table)
    print(f"\nwrote {out}")
    doc = None if args.no_doc else args.doc or (None if args.quick else DOC)
    if doc is not None:
        print(f"{'updated' if update_doc(doc, MARKER, table) else 'no markers in'} {doc}")
    return output


if __name__ == "__main__":
    main()
