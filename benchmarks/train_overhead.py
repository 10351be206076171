"""Fine-tuning overhead: our accelerate loop against a hand-written PyTorch loop and HF Trainer.

Every contender trains the same model on the same rows, with the same collate function,
batch size, AdamW settings, warm-up + cosine schedule and gradient clipping, for one
epoch. Each run happens in a fresh subprocess (so peak memory is its own) and the
contenders alternate round by round, so drift on a shared machine hits them alike. The
score is samples per second over the epoch; the ratio against the raw loop of the same
round is what matters.

    python benchmarks/train_overhead.py            # EfficientNet-Lite0 + MiniLM on emoji rows
    python benchmarks/train_overhead.py --quick    # tiny models on synthetic data
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
LEARNING_RATE = 1e-4
MAX_GRAD_NORM = 1.0
WARMUP_RATIO = 0.1


# -- worker side: one contender, one process ---------------------------------------------


def _setup(expert_kind: str, quick: bool, rows: int, workdir: Path) -> tuple[Any, Any]:
    from ensemble.data import class_names, load_emoji, make_synthetic
    from ensemble.experts import ImageExpert, TextExpert
    from ensemble.testing import build_tiny_text_checkpoint

    if quick:
        ds = make_synthetic(n_train=rows)
        names = class_names(ds)
        if expert_kind == "image":
            expert = ImageExpert("test_resnet", names, pretrained=False, image_size=32)
        else:
            words = {w for text in ds["train"]["text"] for w in text.split()}
            folder = build_tiny_text_checkpoint(workdir / "tiny-text", words)
            expert = TextExpert(str(folder), names)
    else:
        ds = load_emoji()
        names = class_names(ds)
        if expert_kind == "image":
            expert = ImageExpert("timm/tf_efficientnet_lite0.in1k", names, image_size=112)
        else:
            expert = TextExpert("sentence-transformers/all-MiniLM-L6-v2", names, max_length=32)
    train = ds["train"].select(range(min(rows, len(ds["train"]))))
    return expert, train


def _run_ours(expert: Any, train: Any, batch_size: int) -> float:
    expert.fit(train, epochs=1, batch_size=batch_size, learning_rate=LEARNING_RATE,
               max_grad_norm=MAX_GRAD_NORM, warmup_ratio=WARMUP_RATIO, scheduler="cosine",
               progress=False)
    return expert.history_[-1].samples_per_second


def _loader(expert: Any, train: Any, batch_size: int) -> Any:
    import numpy as np
    from torch.utils.data import DataLoader

    from ensemble.experts.base import _Rows

    labels = np.asarray(train["label"])
    rows = _Rows(train, expert.input_column, range(len(train)), labels)
    return DataLoader(rows, batch_size=batch_size, shuffle=True, collate_fn=expert._collate_train)


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
        loss = loss_fn(expert._forward(model, batch), batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += int(batch["labels"].shape[0])
    return seen / (time.perf_counter() - started)


def _run_trainer(expert: Any, train: Any, batch_size: int) -> float:
    """transformers.Trainer on the same rows and collate function (text experts only)."""
    import numpy as np
    from transformers import Trainer, TrainingArguments

    from ensemble.experts.base import _Rows

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = expert._collate_train(rows)
        return {**batch["inputs"], "labels": batch["labels"]}

    rows = _Rows(train, expert.input_column, range(len(train)), np.asarray(train["label"]))
    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(
            output_dir=output, per_device_train_batch_size=batch_size, num_train_epochs=1,
            learning_rate=LEARNING_RATE, weight_decay=0.01, max_grad_norm=MAX_GRAD_NORM,
            warmup_steps=WARMUP_RATIO,
            lr_scheduler_type="cosine", report_to=[],
            save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, use_cpu=True, remove_unused_columns=False,
        )
        trainer = Trainer(model=expert.model, args=args, train_dataset=rows,
                          data_collator=collate)
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"samples_per_second": rate, "peak_rss_mib": peak}))


# -- driver side ---------------------------------------------------------------------------


def _spawn(expert: str, contender: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--expert", expert,
               "--contender", contender, "--rows", str(args.rows),
               "--batch-size", str(args.batch_size)]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{expert}/{contender} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = {"image": ["raw", "ours"], "text": ["raw", "ours", "trainer"]}
    results: dict[str, Any] = {
        "quick": args.quick, "rows": args.rows, "batch_size": args.batch_size,
        "rounds": args.rounds, "experts": {},
    }
    for expert, contenders in plan.items():
        runs: dict[str, list[dict[str, float]]] = {c: [] for c in contenders}
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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expert", choices=("image", "text"), help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (32 if args.quick else 512)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.worker:
        worker(args)
        return None
    results = run(args)
    from ensemble._io import atomic_write_text

    name = "train_overhead_quick.json" if args.quick else "train_overhead.json"
    out = Path(args.out) if args.out else RESULTS / name
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
