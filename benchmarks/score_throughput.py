"""Throughput and peak memory of ``ensemble score`` against ``FusionPredictor.predict``.

Usage::

    python benchmarks/score_throughput.py                  # 10k and 100k synthetic rows
    python benchmarks/score_throughput.py --rows 5000 50000 --shard-rows 2000
    python benchmarks/score_throughput.py --quick          # 200 and 400 rows (the test suite)
    python benchmarks/score_throughput.py --ray --rows 10000   # adds a Ray Data row
    python benchmarks/score_throughput.py --processes 2 --ray  # and a 2-process score row

The bundle is the synthetic recipe's (a ``test_resnet`` image expert and a tiny text
expert): ``ensemble run recipes/synthetic.yaml --run-dir DIR -q`` runs first when
``DIR/bundle`` is absent (``--run-dir``, default ``runs/score_throughput``). For each size the
rows are ``make_synthetic``'s test split repeated with new ids, written as a Parquet file
whose images are stored the way ``datasets`` stores them (PNG bytes), which ``ensemble score``
decodes as ``load_dataset`` would.

Each measurement is a fresh subprocess, so its peak RSS (``ru_maxrss`` of that child, read
with ``os.wait4``) is its own:

- **score**: ``python -m ensemble score BUNDLE --data FILE --out TMP -q`` (streams the file
  in shards of ``--shard-rows``; memory should hold one shard);
- **predict**: a child that loads ``FusionPredictor.load(BUNDLE)``, reads the whole file into
  memory (images decoded to PIL) and calls ``predict`` on all rows at once: the baseline. It
  is skipped for a size whose estimated memory exceeds ``--predict-max-gb`` (the reason is
  recorded).
- **ray** (``--ray``, needs the ``ray`` extra; skipped with the reason when ``ray`` is not
  installed): a child that starts a local ``ray.init(num_cpus=2)`` and runs
  ``read_parquet(FILE).repartition(B).map_batches(BundleScorer, batch_format="pyarrow",
  batch_size=1024, concurrency=2, num_cpus=0.5).write_parquet(TMP)`` (B: at least 4 blocks,
  one per 5,000 rows; the Parquet reader makes one block of a file this size). Each actor
  asks for half a CPU: at one CPU, 2 actors hold both CPUs and the read task never starts.
  Its peak RSS is the largest sum of the RSS of the child and all its descendants (Ray's
  raylet, GCS and workers, actors included), sampled every 0.2 s with psutil; ``ru_maxrss``
  alone would miss the actors. Its ids and predictions are checked against ``score``'s.
- **score on N processes** (``--processes N``): ``torchrun --nproc_per_node N -m ensemble
  score ...`` (each process scores every N-th shard with one thread, torchrun's default);
  peak RSS summed over the process tree as for Ray; its shards are checked against
  ``score``'s.

Both walls are the whole child process (start-up, imports, bundle load, reading, scoring,
and for ``score`` writing the shards); the predict child also reports its ``predict`` call
alone. Sizes alternate contender order. The claim checked: ``score``'s peak RSS stays flat
as rows grow while its rows/s stays comparable to ``predict``.

Writes ``benchmarks/results/score_throughput.json`` (atomically; ``--quick``:
``score_throughput_quick.json``; ``--ray``: ``score_throughput_ray.json``) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
SYNTHETIC_RECIPE = ROOT / "recipes" / "synthetic.yaml"
BASE_ROWS = 1000  # distinct generated rows, repeated with new ids
# Per-row memory estimate of the predict baseline: a decoded 32x32 RGB PIL image and its
# Python objects, the text, the Arrow copy of the file, preprocessed tensors.
PREDICT_BYTES_PER_ROW = 8_000

PREDICT_CHILD = r"""
import json, sys, time
start = time.perf_counter()
import pyarrow.parquet as pq
from ensemble import FusionPredictor
from ensemble.scoring import _decoded
bundle, data = sys.argv[1], sys.argv[2]
predictor = FusionPredictor.load(bundle)
loaded = time.perf_counter()
columns = _decoded(pq.read_table(data))
inputs = {c: columns[c] for c in predictor.columns}
read = time.perf_counter()
predictions = predictor.predict(inputs)
done = time.perf_counter()
assert len(predictions) == len(columns["id"])
print(json.dumps({"load_seconds": loaded - start, "read_seconds": read - loaded,
                  "predict_seconds": done - read, "rows": len(predictions)}))
"""


RAY_CPUS = 2
RAY_CONCURRENCY = 2
RAY_ACTOR_CPUS = 0.5
RAY_BATCH = 1024
RAY_ROWS_PER_BLOCK = 5000

RAY_CHILD = r"""
import json, sys, time
start = time.perf_counter()
import ray
from ensemble.scoring import BundleScorer
bundle, data, out, cpus, concurrency, actor_cpus, batch, blocks = sys.argv[1:9]
ray.init(num_cpus=int(cpus), include_dashboard=False, log_to_driver=False)
started = time.perf_counter()
ds = (ray.data.read_parquet(data).repartition(int(blocks))
      .map_batches(BundleScorer, fn_constructor_kwargs={"bundle": bundle},
                   batch_format="pyarrow", batch_size=int(batch),
                   concurrency=int(concurrency), num_cpus=float(actor_cpus)))
ds.write_parquet(out)
done = time.perf_counter()
stats = ds.stats()
line = next((x for x in stats.splitlines() if "MapBatches(BundleScorer)" in x
             and "tasks executed" in x), "")
ray.shutdown()
print(json.dumps({"ray_init_seconds": started - start, "pipeline_seconds": done - started,
                  "map_batches_stats": line.strip(), "ray_version": ray.__version__}))
"""


def ensure_bundle(run_dir: Path) -> Path:
    """``run_dir/bundle``, running the synthetic recipe into ``run_dir`` when it is absent."""
    bundle = run_dir / "bundle"
    if bundle.is_dir():
        return bundle
    command = [sys.executable, "-m", "ensemble", "run", str(SYNTHETIC_RECIPE),
               "--run-dir", str(run_dir), "-q"]
    print(f"no bundle in {run_dir}; running {' '.join(command[1:])} (under a minute)",
          flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not bundle.is_dir():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"`ensemble run` failed (exit {done.returncode}): " + " | ".join(tail))
    return bundle


def write_rows(path: Path, n: int, base: Any) -> None:
    """``n`` rows (``id``, ``image``, ``text``): ``base``'s rows repeated with new ids."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    indices = pa.array([i % base.num_rows for i in range(n)], pa.int64())
    table = pc.take(base, indices)
    table = table.set_column(table.schema.get_field_index("id"), "id",
                             pa.array([f"row{i}" for i in range(n)], pa.string()))
    pq.write_table(table, path, row_group_size=1000)


def base_table(workdir: Path) -> Any:
    """The synthetic test split's input columns as an Arrow table with ``datasets`` metadata
    (images as PNG bytes)."""
    import pyarrow.parquet as pq

    from ensemble.data import make_synthetic

    split = make_synthetic(n_train=4, n_validation=4, n_test=BASE_ROWS)["test"]
    path = workdir / "base.parquet"
    split.select_columns(["id", "image", "text"]).to_parquet(str(path))
    return pq.read_table(path)


def run_child(command: list[str]) -> dict[str, Any]:
    """Run ``command``; its wall seconds, stdout and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed (exit {proc.returncode}): "
                           + " | ".join(stderr.strip().splitlines()[-5:]))
    return {"wall": wall, "stdout": stdout, "stderr": stderr}


def measured(command: list[str]) -> dict[str, Any]:
    """Run ``command`` under a wrapper that reports the child's own peak RSS."""
    wrapper = [sys.executable, "-c", WRAPPER, *command]
    out = run_child(wrapper)
    lines = out["stderr"].strip().splitlines()
    report = json.loads(lines[-1])
    return {"wall": report["wall"], "peak_rss_bytes": report["maxrss_kb"] * 1024,
            "stdout": out["stdout"]}


# Runs its arguments as one child and prints (last line on stderr) that child's wall seconds
# and ru_maxrss, from os.wait4 (this grandparent holds only that child).
WRAPPER = r"""
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
sys.stderr.write(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss, "rc": code}) + "\n")
sys.exit(code)
"""


def measure_score(bundle: Path, data: Path, shard_rows: int | None, workdir: Path,
                  keep: bool = False) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=workdir, prefix="scores-"))
    command = [sys.executable, "-m", "ensemble", "score", str(bundle), "--data", str(data),
               "--out", str(out), "-q"]
    if shard_rows is not None:
        command += ["--shard-rows", str(shard_rows)]
    result = measured(command)
    shards = sorted(out.glob("part-*.parquet"))
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(s).metadata.num_rows for s in shards)
    measurement = {"wall_seconds": round(result["wall"], 3), "rows_scored": rows,
                   "shards": len(shards), "peak_rss_bytes": result["peak_rss_bytes"]}
    if keep:  # compared with the Ray row, then removed
        measurement["_out"] = str(out)
        return measurement
    for s in out.iterdir():
        s.unlink()
    out.rmdir()
    return measurement


def tree_measured(command: list[str], interval: float = 0.2) -> dict[str, Any]:
    """Run ``command``; its wall seconds, stdout and the peak of the summed RSS of it and all
    its descendants (sampled every ``interval`` seconds with psutil)."""
    import psutil

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    peak = 0
    parent = psutil.Process(proc.pid)

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            total = 0
            try:
                for p in [parent, *parent.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                break
            peak = max(peak, total)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed (exit {proc.returncode}): "
                           + " | ".join(stderr.strip().splitlines()[-5:]))
    return {"wall": wall, "stdout": stdout, "peak_tree_rss_bytes": peak}


def ray_missing() -> str | None:
    """Why the Ray row cannot run, or None."""
    import importlib.util

    for module in ("ray", "psutil"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'late-fusion[ray]')"
    return None


def measure_ray(bundle: Path, data: Path, n: int, workdir: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=workdir, prefix="ray-"))
    blocks = max(2 * RAY_CONCURRENCY, -(-n // RAY_ROWS_PER_BLOCK))
    result = tree_measured([sys.executable, "-c", RAY_CHILD, str(bundle), str(data),
                            str(out), str(RAY_CPUS), str(RAY_CONCURRENCY),
                            str(RAY_ACTOR_CPUS), str(RAY_BATCH), str(blocks)])
    inner = json.loads(result["stdout"].strip().splitlines()[-1])
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["id", "prediction"])
    return {"wall_seconds": round(result["wall"], 3), "rows_scored": table.num_rows,
            "peak_rss_bytes": result["peak_tree_rss_bytes"],
            "peak_rss": "sum over the child and its descendants (raylet, GCS, workers)",
            "ray_init_seconds": round(inner["ray_init_seconds"], 3),
            "pipeline_seconds": round(inner["pipeline_seconds"], 3),
            "map_batches_stats": inner["map_batches_stats"], "ray_version": inner["ray_version"],
            "settings": {"num_cpus": RAY_CPUS, "concurrency": RAY_CONCURRENCY,
                         "actor_num_cpus": RAY_ACTOR_CPUS, "batch_size": RAY_BATCH,
                         "blocks": blocks}, "_out": str(out)}


def measure_score_processes(bundle: Path, data: Path, shard_rows: int | None, processes: int,
                            workdir: Path) -> dict[str, Any]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = Path(tempfile.mkdtemp(dir=workdir, prefix="scores-n-"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
               str(processes), "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "ensemble", "score", str(bundle), "--data", str(data), "--out", str(out),
               "-q"]
    if shard_rows is not None:
        command += ["--shard-rows", str(shard_rows)]
    result = tree_measured(command)
    import pyarrow.parquet as pq

    shards = sorted(out.glob("part-*.parquet"))
    return {"wall_seconds": round(result["wall"], 3), "processes": processes,
            "rows_scored": sum(pq.ParquetFile(s).metadata.num_rows for s in shards),
            "shards": len(shards), "peak_rss_bytes": result["peak_tree_rss_bytes"],
            "peak_rss": "sum over torchrun and its worker processes", "_out": str(out)}


def same_predictions(score_out: str, ray_out: str) -> bool:
    """Whether the two output folders hold the same (id, prediction) pairs."""
    import pyarrow.parquet as pq

    def pairs(folder: str) -> dict[str, str]:
        table = pq.read_table(folder, columns=["id", "prediction"])
        return dict(zip(table["id"].to_pylist(), table["prediction"].to_pylist(), strict=True))

    return pairs(score_out) == pairs(ray_out)


def remove_tree(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def measure_predict(bundle: Path, data: Path) -> dict[str, Any]:
    result = measured([sys.executable, "-c", PREDICT_CHILD, str(bundle), str(data)])
    inner = json.loads(result["stdout"].strip().splitlines()[-1])
    return {"wall_seconds": round(result["wall"], 3), "rows_scored": inner["rows"],
            "peak_rss_bytes": result["peak_rss_bytes"],
            **{k: round(v, 3) for k, v in inner.items() if k.endswith("_seconds")}}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| rows | `score` wall | `score` rows/s | `score` peak RSS | `predict` wall | "
             "`predict` rows/s | `predict` peak RSS | score / predict rows/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["sizes"]:
        s, p = row["score"], row["predict"]
        if p.get("skipped"):
            predict_cells = f"skipped: {p['skipped']} | | |"
            ratio = "—"
        else:
            predict_cells = (f"{p['wall_seconds']:.1f} s | {p['rows_per_second']:,.0f} | "
                             f"{p['peak_rss_bytes'] / 1e9:.2f} GB |")
            ratio = f"{row['score_vs_predict_rows_per_second']:.2f}"
        lines.append(f"| {row['rows']:,} | {s['wall_seconds']:.1f} s | "
                     f"{s['rows_per_second']:,.0f} | {s['peak_rss_bytes'] / 1e9:.2f} GB | "
                     f"{predict_cells} {ratio} |")
    ray_rows = [row for row in result["sizes"] if "ray" in row]
    if ray_rows:
        lines += ["", "| rows | Ray Data wall | Ray Data rows/s | Ray Data peak RSS (tree) | "
                  "ray / score rows/s | same predictions |", "| ---: | ---: | ---: | ---: | "
                  "---: | :---: |"]
        for row in ray_rows:
            r = row["ray"]
            if r.get("skipped"):
                lines.append(f"| {row['rows']:,} | skipped: {r['skipped']} | | | | |")
                continue
            lines.append(f"| {row['rows']:,} | {r['wall_seconds']:.1f} s | "
                         f"{r['rows_per_second']:,.0f} | {r['peak_rss_bytes'] / 1e9:.2f} GB | "
                         f"{row['ray_vs_score_rows_per_second']:.2f} | "
                         f"{r['same_predictions_as_score']} |")
    parallel_rows = [row for row in result["sizes"] if "score_processes" in row]
    if parallel_rows:
        lines += ["", "| rows | processes | `score` wall | `score` rows/s | peak RSS (tree) | "
                  "vs 1 process rows/s | vs predict rows/s | same predictions |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
        for row in parallel_rows:
            m = row["score_processes"]
            vs_predict = row.get("score_processes_vs_predict_rows_per_second")
            lines.append(f"| {row['rows']:,} | {m['processes']} | {m['wall_seconds']:.1f} s | "
                         f"{m['rows_per_second']:,.0f} | {m['peak_rss_bytes'] / 1e9:.2f} GB | "
                         f"{row['score_processes_vs_score_rows_per_second']:.2f} | "
                         + (f"{vs_predict:.2f}" if vs_predict is not None else "—")
                         + f" | {m['same_predictions_as_score']} |")
    growth = result.get("score_peak_rss_growth")
    if growth is not None:
        lines += ["", f"`score` peak RSS, largest size / smallest size: {growth:.2f}×"
                  + (f"; `predict`: {result['predict_peak_rss_growth']:.2f}×"
                     if result.get("predict_peak_rss_growth") is not None else "") + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--rows", type=int, nargs="+", default=None,
                        help="row counts to score (default: 10000 100000; --quick: 200 400)")
    parser.add_argument("--shard-rows", type=int, default=None,
                        help="ensemble score --shard-rows (default: its own, 10000; "
                             "--quick: 100)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "score_throughput",
                        help="where the synthetic recipe's run (and bundle) is, or goes")
    parser.add_argument("--predict-max-gb", type=float, default=8.0,
                        help="skip the predict baseline when its estimated memory exceeds this")
    parser.add_argument("--ray", action="store_true",
                        help="add a Ray Data row (map_batches(BundleScorer) on a local "
                             "2-CPU Ray, 2 actors); skipped when ray is not installed")
    parser.add_argument("--processes", type=int, default=1,
                        help="also time `torchrun --nproc_per_node N -m ensemble score` "
                             "(N > 1)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path")
    parser.add_argument("--note", default=None,
                        help="a remark on the machine state, stored as machine.note")
    args = parser.parse_args(argv)
    sizes = args.rows or ([200, 400] if args.quick else [10_000, 100_000])
    shard_rows = args.shard_rows or (100 if args.quick else None)
    bundle = ensure_bundle(args.run_dir)
    load_before = os.getloadavg()
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = base_table(workdir)
        for index, n in enumerate(sizes):
            data = workdir / f"rows-{n}.parquet"
            write_rows(data, n, base)
            estimate_gb = n * PREDICT_BYTES_PER_ROW / 1e9
            skip = (f"estimated {estimate_gb:.1f} GB > --predict-max-gb {args.predict_max_gb}"
                    if estimate_gb > args.predict_max_gb else None)
            order = ["score", "predict"] if index % 2 == 0 else ["predict", "score"]
            if args.processes > 1:
                order.append("score_processes")
            if args.ray:
                order.append("ray")
            row: dict[str, Any] = {"rows": n, "file_bytes": data.stat().st_size}
            for contender in order:
                print(f"{n} rows: {contender} ...", flush=True)
                if contender == "score":
                    row["score"] = measure_score(bundle, data, shard_rows, workdir,
                                                 keep=args.ray or args.processes > 1)
                elif contender == "score_processes":
                    row["score_processes"] = measure_score_processes(
                        bundle, data, shard_rows, args.processes, workdir)
                elif contender == "ray":
                    missing = ray_missing()
                    row["ray"] = ({"skipped": missing} if missing
                                  else measure_ray(bundle, data, n, workdir))
                elif skip:
                    row["predict"] = {"skipped": skip}
                else:
                    row["predict"] = measure_predict(bundle, data)
            score_out = row["score"].pop("_out", None)
            ray_out = row.get("ray", {}).pop("_out", None)
            parallel_out = row.get("score_processes", {}).pop("_out", None)
            if score_out and ray_out:
                row["ray"]["same_predictions_as_score"] = same_predictions(score_out, ray_out)
            if score_out and parallel_out:
                row["score_processes"]["same_predictions_as_score"] = same_predictions(
                    score_out, parallel_out)
            for folder in (score_out, ray_out, parallel_out):
                if folder:
                    remove_tree(folder)
            if "score_processes" in row:
                m = row["score_processes"]
                m["rows_per_second"] = round(n / m["wall_seconds"], 1)
                row["score_processes_vs_score_rows_per_second"] = round(
                    row["score"]["wall_seconds"] / m["wall_seconds"], 3)
                if "wall_seconds" in row.get("predict", {}):
                    row["score_processes_vs_predict_rows_per_second"] = round(
                        row["predict"]["wall_seconds"] / m["wall_seconds"], 3)
            if "ray" in row and "wall_seconds" in row["ray"]:
                row["ray"]["rows_per_second"] = round(n / row["ray"]["wall_seconds"], 1)
                row["ray_vs_score_rows_per_second"] = round(
                    row["ray"]["rows_per_second"] / (n / row["score"]["wall_seconds"]), 3)
            for contender in ("score", "predict"):
                m = row[contender]
                if "wall_seconds" in m:
                    m["rows_per_second"] = round(n / m["wall_seconds"], 1)
            if "rows_per_second" in row["predict"]:
                row["score_vs_predict_rows_per_second"] = round(
                    row["score"]["rows_per_second"] / row["predict"]["rows_per_second"], 3)
            data.unlink()
            rows_out.append(row)

    def growth(contender: str) -> float | None:
        first, last = rows_out[0][contender], rows_out[-1][contender]
        if len(rows_out) < 2 or "peak_rss_bytes" not in first or "peak_rss_bytes" not in last:
            return None
        return round(last["peak_rss_bytes"] / first["peak_rss_bytes"], 3)

    import torch

    output = {
        "benchmark": "score_throughput",
        "quick": args.quick,
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    **({"note": args.note} if args.note else {})},
        "setup": {"bundle": str(bundle), "recipe": "recipes/synthetic.yaml",
                  "data": f"make_synthetic test split ({BASE_ROWS} rows) repeated with new ids, "
                          "Parquet, images as PNG bytes (datasets Image feature)",
                  "shard_rows": shard_rows or "default (10000)",
                  "walls": "whole child process: start-up, imports, bundle load, read, "
                           "score (and for score, writing shards)",
                  "peak_rss": "ru_maxrss of the child process (os.wait4); ray: the largest "
                              "summed RSS of the child and its descendants, sampled every "
                              "0.2 s",
                  **({"ray": f"ray.init(num_cpus={RAY_CPUS}), map_batches(BundleScorer, "
                             f"batch_format='pyarrow', batch_size={RAY_BATCH}, "
                             f"concurrency={RAY_CONCURRENCY}, num_cpus={RAY_ACTOR_CPUS}) "
                             "after repartition, write_parquet; wall: whole child (ray "
                             "start-up and shutdown included)"} if args.ray else {}),
                  **({"processes": f"torchrun --nproc_per_node {args.processes} -m ensemble "
                                   "score (OMP_NUM_THREADS=1 per process, torchrun's "
                                   "default); wall: the whole torchrun command"}
                     if args.processes > 1 else {})},
        "sizes": rows_out,
        "score_peak_rss_growth": growth("score"),
        "predict_peak_rss_growth": growth("predict"),
    }
    from ensemble._io import write_json

    out = args.out or RESULTS / ("score_throughput_quick.json" if args.quick
                                 else "score_throughput_ray.json" if args.ray
                                 or args.processes > 1 else "score_throughput.json")
    write_json(out, output)
    print(markdown(output))
    print(f"\nwrote {out}")
    return output


if __name__ == "__main__":
    main()
