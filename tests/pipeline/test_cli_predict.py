"""``ensemble predict`` by column (``--input``), from a file (``--data``/``--out``), and the
argument checks that run before any model is loaded (issue 15, items 10, 12 and 13)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ensemble import FusionPredictor
from ensemble.cli import main


def _rows_file(synthetic_data, folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    test = synthetic_data["test"].select(range(n))
    path = folder / "rows.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "text"])
        for i, (image, text) in enumerate(zip(test["image"], test["text"], strict=True)):
            image.save(folder / f"{i}.png")
            # row 1 lacks its image, row 2 its text: missing inputs are empty cells
            writer.writerow([f"r{i}", "" if i == 1 else f"{i}.png", "" if i == 2 else text])
    return path


def test_predict_by_column_matches_the_python_api(synthetic_run: Path, synthetic_data,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = synthetic_run / "bundle"
    image = tmp_path / "one.png"
    synthetic_data["test"][0]["image"].save(image)
    text = synthetic_data["test"][0]["text"]
    assert main(["predict", str(bundle), "-q", "--input", f"image={image}",
                 "--input", f"text={text}", "--input", "image=-", "--input", f"text={text}"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    expected = FusionPredictor.load(bundle).predict_proba(
        {"image": [str(image), None], "text": [text, text]})
    got = [[row["probabilities"][c] for c in FusionPredictor.load(bundle).class_names]
           for row in rows]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert rows[1]["experts"]["image"] == {"available": False}
    assert rows[0]["input"] == {"image": str(image), "text": text}


def test_predict_a_file_writes_one_row_per_example(synthetic_run: Path, synthetic_data,
                                                   tmp_path: Path) -> None:
    bundle = synthetic_run / "bundle"
    data = _rows_file(synthetic_data, tmp_path / "data")
    out = tmp_path / "out" / "predictions.csv"
    assert main(["predict", str(bundle), "-q", "--data", str(data), "--out", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    predictor = FusionPredictor.load(bundle)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(6)]
    assert set(rows[0]) == {"id", "prediction", "confidence",
                            *(f"p_{c}" for c in predictor.class_names)}
    test = synthetic_data["test"].select(range(6))
    images = [None if i == 1 else str(tmp_path / "data" / f"{i}.png") for i in range(6)]
    texts = [None if i == 2 else t for i, t in enumerate(test["text"])]
    expected = predictor.predict({"image": images, "text": texts})
    assert [r["prediction"] for r in rows] == expected.tolist()
    assert not list(out.parent.glob(".*tmp*")), "no temporary file is left"


@pytest.mark.parametrize(("argv", "code", "message"), [
    ([], 4, "at least one --input"),
    (["--input", "text"], 2, "COLUMN=VALUE"),
    (["--input", "text=a", "--input", "text=b", "--input", "image=-"], 4,
     "one value per example"),
    (["--out", "x.csv", "--input", "text=a"], 2, "--out is for --data"),
    (["--data", "nope.csv", "--out", "x.csv"], 4, "does not exist"),
    (["--top-k", "-1", "--input", "text=a"], 2, "--top-k"),
])
def test_argument_errors_come_before_loading_the_bundle(argv: list[str], code: int,
                                                        message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # The bundle does not even exist: every message comes from the argument checks alone.
    assert main(["predict", str(tmp_path / "missing"), "-q", *argv]) == code
    assert message in capsys.readouterr().err


def test_unknown_column_and_run_folder_are_named(synthetic_run: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(synthetic_run / "bundle"), "-q", "--input", "txt=a"]) == 4
    assert "Did you mean 'text'" in capsys.readouterr().err
    assert main(["predict", str(synthetic_run), "-q", "--input", "text=a"]) == 3
    assert "is a run folder, not a bundle" in capsys.readouterr().err
