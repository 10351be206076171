"""``ensemble score``: a file streamed through a bundle into resumable Parquet shards
(issue 14, "Scoring a large dataset with a bundle")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SCORE_ROWS, score_row_missing

from ensemble import FusionPredictor, scoring
from ensemble.cli import main
from ensemble.exceptions import DataError
from ensemble.scoring import SCORE_MANIFEST, ScoreDirectoryMismatchError, score_file

N_ROWS = SCORE_ROWS
SHARD = 16
_missing = score_row_missing


@pytest.fixture(scope="module")
def rows(score_rows) -> dict[str, Path]:
    """The rows scored here (tests/pipeline/conftest.py)."""
    return score_rows


@pytest.fixture(scope="module")
def predictor(synthetic_run: Path) -> FusionPredictor:
    return FusionPredictor.load(synthetic_run / "bundle")


def _inputs(rows) -> dict[str, list]:
    folder = rows["folder"]
    return {"image": [None if r["image"] is None else str(folder / r["image"])
                      for r in rows["records"]],
            "text": [r["text"] for r in rows["records"]]}


def test_score_parquet_matches_the_predictor(synthetic_run: Path, rows, predictor,
                                             tmp_path: Path) -> None:
    out = tmp_path / "scores"
    result = score_file(predictor, synthetic_run / "bundle", rows["parquet"], out,
                        shard_rows=SHARD)
    assert (result.rows, result.scored_rows, result.skipped_shards) == (N_ROWS, N_ROWS, 0)
    assert sorted(p.name for p in out.iterdir()) == [
        SCORE_MANIFEST, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.ParquetFile(out / s).metadata.num_rows for s in result.shards] == [16, 16, 8]
    table = pq.read_table(out)  # the manifest (a _ name) is not read as data
    assert table["id"].to_pylist() == [f"r{i}" for i in range(N_ROWS)]
    inputs = _inputs(rows)
    np.testing.assert_array_equal(table["prediction"].to_pylist(), predictor.predict(inputs))
    proba = predictor.predict_proba(inputs)
    got = np.stack([table[f"proba_{c}"].to_numpy() for c in predictor.class_names], axis=1)
    np.testing.assert_allclose(got, proba, atol=1e-6)
    np.testing.assert_allclose(table["probability"].to_numpy(), proba.max(axis=1), atol=1e-6)
    logit_set = predictor.logits(inputs)
    for j, name in enumerate(("image", "text")):
        present = table[f"present_{name}"].to_pylist()
        assert present == [not _missing(i)[j] for i in range(N_ROWS)]
        assert present == logit_set.present(name).tolist()
        logits = table[f"logits_{name}"].to_pylist()
        assert all((row is None) == (not keep) for row, keep in zip(logits, present, strict=True))
        kept = np.array([row for row in logits if row is not None], dtype=np.float32)
        np.testing.assert_allclose(kept, logit_set.logits[name][np.asarray(present)], atol=1e-5)
    manifest = json.loads((out / SCORE_MANIFEST).read_text())
    assert manifest["complete"] is True and manifest["rows"] == N_ROWS
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, 8]
    assert manifest["shard_rows"] == SHARD and len(manifest["bundle_sha256"]) == 64


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_csv_and_jsonl_give_the_same_shards_as_parquet(synthetic_run: Path, rows, predictor,
                                                       tmp_path: Path, kind: str) -> None:
    bundle = synthetic_run / "bundle"
    score_file(predictor, bundle, rows["parquet"], tmp_path / "a", shard_rows=SHARD)
    score_file(predictor, bundle, rows[kind], tmp_path / "b", shard_rows=SHARD)
    assert pq.read_table(tmp_path / "a").equals(pq.read_table(tmp_path / "b"))


def test_a_killed_run_resumes_without_duplicates(synthetic_run: Path, rows, predictor,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = synthetic_run / "bundle"
    score_file(predictor, bundle, rows["parquet"], tmp_path / "whole", shard_rows=SHARD)
    out = tmp_path / "killed"
    real = scoring._write_shard
    written: list[str] = []

    def crash_on_second(table, path: Path) -> None:
        if written:  # the second shard dies half-written, as a SIGKILL would leave it
            (path.parent / f".{path.name}.host-1.abcd.tmp").write_bytes(b"PAR1 half")
            raise KeyboardInterrupt
        real(table, path)
        written.append(path.name)

    monkeypatch.setattr(scoring, "_write_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        score_file(predictor, bundle, rows["parquet"], out, shard_rows=SHARD)
    manifest = json.loads((out / SCORE_MANIFEST).read_text())
    assert [s["file"] for s in manifest["shards"]] == ["part-00000.parquet"]
    assert manifest["complete"] is False
    monkeypatch.setattr(scoring, "_write_shard", real)
    scored = []
    monkeypatch.setattr(scoring, "_score", lambda p, r, ids, base, real=scoring._score: (
        scored.append(ids[0]) or real(p, r, ids, base)))
    result = score_file(predictor, bundle, rows["parquet"], out, shard_rows=SHARD)
    assert scored == ["r16", "r32"]  # the finished shard was not predicted again
    assert (result.skipped_shards, result.scored_rows, result.rows) == (1, 24, N_ROWS)
    assert not list(out.glob(".*.tmp"))  # the half-written temporary is gone, never read
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in
                                                           (tmp_path / "whole").iterdir())
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "whole"))
    again = score_file(predictor, bundle, rows["parquet"], out, shard_rows=SHARD)
    assert (again.scored_rows, again.skipped_shards) == (0, 3)


def test_another_shard_size_or_bundle_is_refused(synthetic_run: Path, rows, predictor,
                                                 tmp_path: Path) -> None:
    bundle = synthetic_run / "bundle"
    out = tmp_path / "scores"
    score_file(predictor, bundle, rows["parquet"], out, shard_rows=SHARD)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ScoreDirectoryMismatchError, match=r"--shard-rows: 16 there, 8 now.*"
                                                          r"--overwrite"):
        score_file(predictor, bundle, rows["parquet"], out, shard_rows=8)
    with pytest.raises(ScoreDirectoryMismatchError, match="input file"):
        score_file(predictor, bundle, rows["csv"], out, shard_rows=SHARD)
    other = tmp_path / "bundle-copy"
    other.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["versions"] = {"edited": "1"}
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ScoreDirectoryMismatchError, match="bundle"):
        score_file(predictor, other, rows["parquet"], out, shard_rows=SHARD)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost
    result = score_file(predictor, bundle, rows["parquet"], out, shard_rows=8, overwrite=True)
    assert len(result.shards) == 5
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-0000{i}.parquet"
                                                          for i in range(5)]


def test_bad_input_is_a_typed_error(synthetic_run: Path, rows, predictor,
                                    tmp_path: Path) -> None:
    bundle = synthetic_run / "bundle"
    table = pq.read_table(rows["parquet"])
    no_text = rows["folder"] / "no_text.parquet"  # next to the images it names
    every_image = pa.array([f"{i}.png" for i in range(N_ROWS)])
    pq.write_table(table.drop_columns(["text"]).set_column(1, "image", every_image), no_text)
    with pytest.raises(DataError, match=r"no column 'text'.*--allow-missing text"):
        score_file(predictor, bundle, no_text, tmp_path / "a", shard_rows=SHARD)
    result = score_file(predictor, bundle, no_text, tmp_path / "b", shard_rows=SHARD,
                        allow_missing=["text"])
    assert not any(pq.read_table(tmp_path / "b")["present_text"].to_pylist())
    assert result.rows == N_ROWS
    ids = table["id"].to_pylist()
    ids[20] = None
    holes = rows["folder"] / "holes.parquet"
    pq.write_table(table.set_column(0, "id", pa.array(ids, pa.string())), holes)
    with pytest.raises(DataError, match="row 20 has no value in the id column 'id'"):
        score_file(predictor, bundle, holes, tmp_path / "c", shard_rows=SHARD)
    kept = json.loads((tmp_path / "c" / SCORE_MANIFEST).read_text())["shards"]
    assert [s["file"] for s in kept] == ["part-00000.parquet"]  # the first shard is kept
    with pytest.raises(DataError, match="no id column 'key'"):
        score_file(predictor, bundle, rows["parquet"], tmp_path / "d", shard_rows=SHARD,
                   id_column="key")


def test_the_cli_scores_and_resumes(synthetic_run: Path, rows, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle = str(synthetic_run / "bundle")
    out = tmp_path / "cli"
    args = ["score", bundle, "--data", str(rows["csv"]), "--out", str(out),
            "--shard-rows", str(SHARD)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "40 rows in 3 shards" in err and "rows/s" in err
    assert pq.read_table(out).num_rows == N_ROWS
    assert main([*args, "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*args[:-1], "8", "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["score", bundle, "--data", str(tmp_path / "absent.csv"), "--out",
                 str(out), "-q"]) == 4
    assert "does not exist" in capsys.readouterr().err
    odd = tmp_path / "rows.xlsx"
    odd.write_bytes(b"")
    assert main(["score", bundle, "--data", str(odd), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "must be one of" in capsys.readouterr().err


def test_bundle_scorer_gives_the_shards_columns(synthetic_run: Path, rows, tmp_path: Path
                                                ) -> None:
    """BundleScorer (the Ray Data callable) scores a pyarrow batch like ensemble score."""
    out = tmp_path / "scores"
    predictor = FusionPredictor.load(synthetic_run / "bundle")
    score_file(predictor, synthetic_run / "bundle", rows["parquet"], out, shard_rows=SHARD)
    expected = pq.read_table(out)
    scorer = scoring.BundleScorer(synthetic_run / "bundle", base_dir=rows["folder"])
    batches = pq.read_table(rows["parquet"]).to_batches(max_chunksize=7)
    got = pa.concat_tables([scorer(pa.Table.from_batches([b])) for b in batches])
    assert got.column_names == expected.column_names
    assert got["id"].to_pylist() == expected["id"].to_pylist()
    assert got["prediction"].to_pylist() == expected["prediction"].to_pylist()
    np.testing.assert_allclose(got["probability"].to_numpy(), expected["probability"].to_numpy(),
                               atol=1e-6)
    with pytest.raises(DataError, match=r"no id column 'key'.*BundleScorer\(id_column"):
        scoring.BundleScorer(synthetic_run / "bundle", id_column="key")(
            pq.read_table(rows["parquet"]))



def test_reading_a_parquet_file_holds_a_bounded_part_of_it(tmp_path: Path) -> None:
    """The Parquet reader streams: Arrow memory held while reading stays a small part of
    the file, not the whole file by its end (pyarrow's pre_buffer cache did that)."""
    rng = np.random.default_rng(0)
    rows = 16000
    table = pa.table({"id": [str(i) for i in range(rows)],
                      "blob": [rng.bytes(2048) for _ in range(rows)]})
    path = tmp_path / "large.parquet"
    pq.write_table(table, path, row_group_size=1000, compression="none")
    del table
    start, peak, seen = pa.total_allocated_bytes(), 0, 0
    for batch in scoring._batches(path, None):
        seen += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - start)
    assert seen == rows
    assert peak < path.stat().st_size / 3, (peak, path.stat().st_size)
