"""Ray Data recipe (issue 14): ``Dataset.map_batches(BundleScorer, ...)`` on a local 2-CPU
Ray gives the same rows as ``ensemble score`` on the same Parquet file.

Needs the ``ray`` extra (``pip install 'late-fusion[ray]'``); marked ``ray`` and left out of
the default suite (``pytest -m ray`` runs it).

The settings matter on a small machine: Ray Data's read (``ListFiles`` and
``ReadFilesParquetV2``) tasks ask for 1 CPU each, so an actor pool of ``concurrency=2``
actors at the default ``num_cpus=1`` holds both CPUs of ``ray.init(num_cpus=2)`` and the
read task waits for a CPU forever (ray 2.60: "Active & requested resources: 3/2 CPU", the
raylet's CPU ``available: 0``). Here each actor asks for ``num_cpus=0.5``, which leaves one
CPU to the reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SCORE_ROWS, score_row_missing

from ensemble import FusionPredictor
from ensemble.scoring import BundleScorer, score_file

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

N_ROWS = SCORE_ROWS
#: map_batches settings: 2 actors of half a CPU each (the read tasks keep a CPU), 4 blocks
#: of 10 rows scored in batches of 8.
RAY_CPUS = 2
CONCURRENCY = 2
ACTOR_CPUS = 0.5
BLOCKS = 4
BATCH_SIZE = 8


@pytest.fixture(scope="module")
def ray_rows(score_rows) -> Path:
    """The Parquet file tests/pipeline/test_score.py scores (some rows without an image or
    a text)."""
    return score_rows["parquet"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs, shut down after the module."""
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024**2)
    try:
        yield ray
    finally:
        ray.shutdown()


def _by_id(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("id", "ascending")]))


def test_map_batches_with_bundle_scorer_matches_ensemble_score(
        synthetic_run: Path, ray_rows: Path, local_ray, tmp_path: Path) -> None:
    bundle = synthetic_run / "bundle"
    score_file(FusionPredictor.load(bundle), bundle, ray_rows, tmp_path / "scores")
    expected = _by_id(pq.read_table(tmp_path / "scores"))

    scored = (local_ray.data.read_parquet(str(ray_rows))
              .repartition(BLOCKS)  # the reader makes one block of a small file
              .map_batches(BundleScorer,
                           fn_constructor_kwargs={"bundle": str(bundle),
                                                  "base_dir": str(ray_rows.parent)},
                           batch_format="pyarrow", batch_size=BATCH_SIZE,
                           concurrency=CONCURRENCY, num_cpus=ACTOR_CPUS))
    got = _by_id(pa.concat_tables(local_ray.get(scored.to_arrow_refs())))

    assert got.num_rows == N_ROWS
    assert got.column_names == expected.column_names
    for name in ("id", "prediction", "present_image", "present_text"):
        assert got[name].to_pylist() == expected[name].to_pylist(), name
    assert got["present_image"].to_pylist() == [not score_row_missing(i)[0] for i in
                                                sorted(range(N_ROWS), key=lambda i: f"r{i}")]
    floats = [n for n in expected.column_names if n == "probability" or n.startswith("proba_")]
    for name in floats:  # batches of 8 rows, not of 40: float rounding may differ
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(),
                                   atol=1e-5, err_msg=name)
    for name in ("logits_image", "logits_text"):
        rows, want = got[name].to_pylist(), expected[name].to_pylist()
        assert [r is None for r in rows] == [w is None for w in want], name
        np.testing.assert_allclose(np.array([r for r in rows if r is not None]),
                                   np.array([w for w in want if w is not None]),
                                   atol=1e-5, err_msg=name)
