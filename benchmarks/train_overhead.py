"""Fine-tuning overhead: our accelerate loop against a hand-written PyTorch loop and HF Trainer.

Every contender trains the same model on the same rows, with the same collate function,
forward pass, loss (mean cross-entropy), batch size, AdamW settings, warm-up + cosine
schedule and gradient clipping, for one epoch. Each run happens in a fresh subprocess (so
peak memory is its own) and the contenders alternate round by round, so drift on a shared
machine hits them alike. The score is samples per second over the epoch; the ratio against
the raw loop of the same round is what matters.

    python benchmarks/train_overhead.py            # EfficientNet-Lite0 + MiniLM on emoji rows
    python benchmarks/train_overhead.py --quick    # tiny models, same classes, synthetic rows
    python benchmarks/train_overhead.py --experts audio   # only the audio expert

``--quick`` takes the full mode's code path with smaller models: a timm EfficientNet loaded
as pretrained from a local folder, and a text checkpoint laid out like all-MiniLM-L6-v2 (a
sentence-transformers folder declaring mean pooling), so the text expert builds the same
mean-pooling model, which returns logits and no loss. Every run checks the model class it
trained against :data:`MODEL_CLASSES`.

The audio expert (``transformers-audio``) has no pretrained weights offline, so in both modes
it trains a wav2vec2 audio classifier built from config on generated tones (three pitches,
one per class): ``ensemble.testing.build_tiny_audio_checkpoint`` (16 wide, one layer, 0.3 s
clips) with ``--quick``, 64 wide with two layers on 1 s clips otherwise. Its convolutional
feature encoder is frozen, as the expert does by default, in every contender alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
LEARNING_RATE = 1e-4
MAX_GRAD_NORM = 1.0
WARMUP_RATIO = 0.1
IMAGE_CHECKPOINT = "timm/tf_efficientnet_lite0.in1k"
TEXT_CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"
#: The model class each expert trains, in both modes (quick mode uses smaller instances).
MODEL_CLASSES = {"image": "EfficientNet", "text": "MeanPoolingClassifier",
                 "audio": "Wav2Vec2ForSequenceClassification"}
#: The contenders of each expert, in the order of the first round.
PLAN = {"image": ["raw", "ours"], "text": ["raw", "ours", "trainer"], "audio": ["raw", "ours"]}


# -- worker side: one contender, one process ---------------------------------------------


def _tiny_image_checkpoint(folder: Path) -> Path:
    """A random timm ``test_efficientnet`` saved as a timm folder, like the converted mirror."""
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("test_efficientnet", pretrained=False)
    save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def _tiny_text_checkpoint(folder: Path, words: Iterable[str]) -> Path:
    """A tiny BERT in all-MiniLM-L6-v2's sentence-transformers layout (mean pooling)."""
    from ensemble.testing import build_tiny_text_checkpoint

    build_tiny_text_checkpoint(folder, words)
    hidden = json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
    }), encoding="utf-8")
    return folder


def _audio_setup(quick: bool, rows: int, workdir: Path) -> tuple[Any, Any]:
    """A wav2vec2 classifier built from config and ``rows`` tones of three pitches."""
    from datasets import ClassLabel, Dataset

    from ensemble import create_expert
    from ensemble.testing import build_tiny_audio_checkpoint, tone_clip

    pitches = {"low": 300.0, "mid": 1200.0, "high": 4000.0}
    names = list(pitches)
    checkpoint = build_tiny_audio_checkpoint(
        workdir / "audio", **({} if quick else {"hidden_size": 64, "num_layers": 2}))
    seconds = 0.3 if quick else 1.0
    labels = [i % 3 for i in range(rows)]
    train = Dataset.from_dict({
        "clip": [tone_clip(pitches[names[k]], seconds=seconds, seed=i)
                 for i, k in enumerate(labels)],
        "label": labels,
    }).cast_column("label", ClassLabel(names=names))
    expert = create_expert("transformers-audio", str(checkpoint), column="clip", labels=names,
                           pretrained=False, max_duration=seconds)
    return expert, train


def _setup(expert_kind: str, quick: bool, rows: int, workdir: Path) -> tuple[Any, Any]:
    from ensemble import ImageExpert, TextExpert, class_names, load_emoji, make_synthetic

    if expert_kind == "audio":
        return _audio_setup(quick, rows, workdir)

    ds = make_synthetic(n_train=rows) if quick else load_emoji()
    names = class_names(ds)
    if expert_kind == "image":
        image_checkpoint = (str(_tiny_image_checkpoint(workdir / "tiny-image")) if quick
                            else IMAGE_CHECKPOINT)
        expert: Any = ImageExpert(image_checkpoint, names, image_size=32 if quick else 112)
    else:
        text_checkpoint = (str(_tiny_text_checkpoint(
            workdir / "tiny-text", {w for text in ds["train"]["text"] for w in text.split()}))
            if quick else TEXT_CHECKPOINT)
        expert = TextExpert(text_checkpoint, names, max_length=32)
    train = ds["train"].select(range(min(rows, len(ds["train"]))))
    return expert, train


def _run_ours(expert: Any, train: Any, batch_size: int) -> float:
    expert.fit(train, epochs=1, batch_size=batch_size, learning_rate=LEARNING_RATE,
               max_grad_norm=MAX_GRAD_NORM, warmup_ratio=WARMUP_RATIO, scheduler="cosine",
               progress=False)
    return expert.history_[-1].samples_per_second


def _rows(expert: Any, train: Any) -> Any:
    """The expert's own training rows: its input column and encoded labels."""
    from ensemble.experts.torch_expert import InputRows

    return InputRows(train, expert.column, range(len(train)), expert.encode_labels(train))


def _loader(expert: Any, train: Any, batch_size: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(_rows(expert, train), batch_size=batch_size, shuffle=True,
                      collate_fn=expert.collate_train)


def _schedule(optimizer: Any, total: int) -> Any:
    import torch

    warmup = int(WARMUP_RATIO * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _run_raw(expert: Any, train: Any, batch_size: int) -> float:
    """The minimal hand-written loop a PyTorch user would write."""
    import torch

    torch.manual_seed(0)
    model = expert.model
    loader = _loader(expert, train, batch_size)
    # The same optimizer as our loop (fused AdamW), so the ratio measures loop overhead.
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01,
                                  fused=True)
    scheduler = _schedule(optimizer, len(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    seen = 0
    for batch in loader:
        loss = loss_fn(expert.forward(model, batch), batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += int(batch["labels"].shape[0])
    return seen / (time.perf_counter() - started)


def _run_trainer(expert: Any, train: Any, batch_size: int) -> float:
    """transformers.Trainer on the same rows, collate function, forward and loss (text only).

    The text expert's mean-pooling model returns logits and no loss, so Trainer's default
    ``compute_loss`` (which takes the loss from the model's outputs) cannot train it. The
    documented way is to override ``compute_loss`` in a subclass and say, through
    ``loss_is_scaled_for_ga``, that the loss is a per-batch mean.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    class ExpertTrainer(Trainer):
        """Trainer whose loss is the other contenders': mean cross-entropy of the logits."""

        loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides by accumulation

        def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any],
                         return_outputs: bool = False,
                         num_items_in_batch: torch.Tensor | int | None = None) -> Any:
            logits = expert.forward(model, inputs)
            loss = torch.nn.functional.cross_entropy(logits, inputs["labels"])
            return (loss, {"logits": logits}) if return_outputs else loss

    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(
            output_dir=output, per_device_train_batch_size=batch_size, num_train_epochs=1,
            learning_rate=LEARNING_RATE, weight_decay=0.01, max_grad_norm=MAX_GRAD_NORM,
            warmup_steps=WARMUP_RATIO,  # a float below 1 is a ratio of the training steps
            lr_scheduler_type="cosine", report_to=[],
            save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, use_cpu=True, remove_unused_columns=False,
        )
        trainer = ExpertTrainer(model=expert.model, args=args,
                                train_dataset=_rows(expert, train),
                                data_collator=expert.collate_train)
        metrics = trainer.train().metrics
    return float(metrics["train_samples_per_second"])


CONTENDERS: dict[str, Callable[[Any, Any, int], float]] = {
    "ours": _run_ours,
    "raw": _run_raw,
    "trainer": _run_trainer,
}


def worker(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        expert, train = _setup(args.expert, args.quick, args.rows, Path(workdir))
        rate = CONTENDERS[args.contender](expert, train, args.batch_size)
        model = type(expert.model).__name__
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"samples_per_second": rate, "peak_rss_mib": peak, "model": model}))


# -- driver side ---------------------------------------------------------------------------


def _spawn(expert: str, contender: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", "--expert", expert,
               "--contender", contender, "--rows", str(args.rows),
               "--batch-size", str(args.batch_size)]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{expert}/{contender} failed:\n{done.stderr[-3000:]}")
    sample: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if sample["model"] != MODEL_CLASSES[expert]:
        raise RuntimeError(
            f"{expert}/{contender} trained a {sample['model']}, not the "
            f"{MODEL_CLASSES[expert]} of the full benchmark; --quick must build the same "
            "model class (update MODEL_CLASSES only if the full mode's model changed)."
        )
    return sample


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = {expert: PLAN[expert] for expert in args.experts}
    results: dict[str, Any] = {
        "quick": args.quick, "rows": args.rows, "batch_size": args.batch_size,
        "rounds": args.rounds, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
        # torch's intra-op threads follow it; on a busy machine, one thread per run keeps
        # the rounds comparable (threads contending with other work multiply the spread).
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        # 1-minute load average before and after: above the core count, other work shared
        # the machine (the ratios still hold, as the contenders alternate).
        "load_average": {"start": round(os.getloadavg()[0], 2)},
        "models": {expert: MODEL_CLASSES[expert] for expert in plan}, "experts": {},
    }
    for expert, contenders in plan.items():
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        for round_index in range(args.rounds):
            order = contenders if round_index % 2 == 0 else list(reversed(contenders))
            for contender in order:
                runs[contender].append(_spawn(expert, contender, args))
        summary: dict[str, Any] = {}
        for contender, samples in runs.items():
            rates = [s["samples_per_second"] for s in samples]
            ratios = [s["samples_per_second"] / r["samples_per_second"]
                      for s, r in zip(samples, runs["raw"], strict=True)]
            summary[contender] = {
                "samples_per_second": round(statistics.median(rates), 2),
                "ratio_to_raw": round(statistics.median(ratios), 3),
                "peak_rss_mib": round(max(s["peak_rss_mib"] for s in samples)),
                "all_samples_per_second": [round(r, 2) for r in rates],
            }
        if "trainer" in summary:
            summary["ours"]["ratio_to_trainer"] = round(statistics.median(
                [o["samples_per_second"] / t["samples_per_second"]
                 for o, t in zip(runs["ours"], runs["trainer"], strict=True)]), 3)
        results["experts"][expert] = summary
    results["load_average"]["end"] = round(os.getloadavg()[0], 2)
    return results


def _table(results: dict[str, Any]) -> str:
    lines = ["| expert | contender | samples/s (median) | × raw loop | × Trainer | peak RSS MiB |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for expert, summary in results["experts"].items():
        for contender, row in summary.items():
            lines.append(
                f"| {expert} | {contender} | {row['samples_per_second']} | "
                f"{row['ratio_to_raw']} | {row.get('ratio_to_trainer', '')} | "
                f"{row['peak_rss_mib']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--experts", nargs="+", choices=sorted(PLAN), default=list(PLAN),
                        help="which experts to measure (default: all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expert", choices=sorted(PLAN), help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (32 if args.quick else 512)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.worker:
        worker(args)
        return None
    results = run(args)
    subset = "" if set(args.experts) == set(PLAN) else "_" + "_".join(args.experts)
    name = f"train_overhead{subset}{'_quick' if args.quick else ''}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(_table(results))
    load = results["load_average"]
    print(f"{results['date']}, {results['cpus']} CPUs, 1-min load average {load['start']} at "
          f"the start, {load['end']} at the end; models: {results['models']}")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
