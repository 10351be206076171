"""One run of ``recipes/synthetic.yaml`` through the CLI, shared by the pipeline tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _cli_runner import FAST, REPO, SYNTHETIC, cli_env, run_cli

__all__ = ["FAST", "REPO", "SCORE_ROWS", "SYNTHETIC", "cli_env", "run_cli", "score_row_missing"]

#: Rows of the file the scoring tests score (`ensemble score`, Ray Data).
SCORE_ROWS = 40


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of ``ensemble run recipes/synthetic.yaml`` (done once)."""
    run_dir = tmp_path_factory.mktemp("runs") / "synthetic"
    run_cli("run", str(SYNTHETIC), "--run-dir", str(run_dir), "-q", *FAST)
    return run_dir


@pytest.fixture(scope="session")
def synthetic_data():
    from ensemble.data import make_synthetic

    return make_synthetic(n_train=96, n_validation=64, n_test=64, noise=0.1)


def score_row_missing(i: int) -> tuple[bool, bool]:
    """(image missing, text missing) of row ``i`` of the scoring tests' file: never both."""
    return i % 6 == 1, i % 6 == 4


@pytest.fixture(scope="session")
def score_rows(synthetic_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic test split's first :data:`SCORE_ROWS` rows as Parquet, CSV and JSON
    lines files (images as paths relative to their folder), some rows without an image or
    a text; ``records`` holds the rows themselves."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("score-data")
    test = synthetic_data["test"].select(range(SCORE_ROWS))
    records = []
    for i, (image, text) in enumerate(zip(test["image"], test["text"], strict=True)):
        image.save(folder / f"{i}.png")
        no_image, no_text = score_row_missing(i)
        records.append({"id": f"r{i}", "image": None if no_image else f"{i}.png",
                        "text": None if no_text else text})
    pq.write_table(pa.Table.from_pylist(records), folder / "rows.parquet", row_group_size=10)
    with (folder / "rows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "text"])
        for r in records:
            writer.writerow([r["id"], r["image"] or "", r["text"] or ""])
    with (folder / "rows.jsonl").open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return {"parquet": folder / "rows.parquet", "csv": folder / "rows.csv",
            "jsonl": folder / "rows.jsonl", "folder": folder,
            "records": records}  # type: ignore[dict-item]
