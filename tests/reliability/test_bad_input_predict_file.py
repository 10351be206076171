"""Bad inputs of ``ensemble predict --data FILE --out FILE`` (and ``--input``): each exits with
its code and one line naming the value and the fix, and no prediction file (whole or
partial) is left behind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _helpers import tiny_predictor
from PIL import Image

from ensemble.cli import main


@dataclass(frozen=True)
class Case:
    id: str
    write: Callable[[Path], list[str]]  # writes the inputs under a folder, returns extra argv
    code: int
    culprit: tuple[str, ...]


def _csv(name: str, text: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        (folder / name).write_text(text)
        return ["--data", str(folder / name), "--out", str(folder / "out" / "p.csv")]
    return write


def _corrupt_image(folder: Path) -> list[str]:
    Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / "ok.png")
    (folder / "bad.png").write_bytes(b"not a png at all")
    (folder / "rows.csv").write_text("id,image,text\na,ok.png,red\nb,bad.png,blue\n")
    return ["--data", str(folder / "rows.csv"), "--out", str(folder / "out" / "p.csv")]


def _missing_file(folder: Path) -> list[str]:
    return ["--data", str(folder / "nope.csv"), "--out", str(folder / "out" / "p.csv")]


def _text_out(folder: Path) -> list[str]:
    (folder / "rows.csv").write_text("id,text\na,red\n")
    return ["--data", str(folder / "rows.csv"), "--out", str(folder / "out" / "p.txt")]


CASES = [
    Case("data-file-missing", _missing_file, 4, ("nope.csv", "does not exist")),
    Case("data-file-empty", _csv("rows.csv", "id,image,text\n"), 4, ("rows.csv", "no rows")),
    Case("data-without-the-bundle-columns", _csv("rows.csv", "id,photo,caption\na,x.png,hi\n"),
         4, ("none of the bundle's input columns", "'image'", "'text'", "rename")),
    Case("data-unsupported-extension", _csv("rows.xlsx", "x"), 2, ("rows.xlsx", ".parquet")),
    Case("out-unsupported-extension", _text_out, 2, ("p.txt", ".csv, .jsonl or .parquet")),
    Case("data-with-a-corrupt-image", _corrupt_image, 4, ("bad.png", "of example '1'")),
    Case("input-without-equals", lambda f: ["--input", "text"], 2, ("COLUMN=VALUE", "'text'")),
    Case("input-unknown-column", lambda f: ["--input", "caption=hi"], 4,
         ("'caption'", "image", "text")),
    Case("input-tabular-json-for-a-text-column-is-text", lambda f: ["--input", "text={}"], 0, ()),
]


@pytest.fixture(scope="module")
def bundle(tiny_text_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_predictor(tiny_text_checkpoint).save(tmp_path_factory.mktemp("b") / "bundle")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_predict_input(case: Case, bundle: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.write(tmp_path)
    code = main(["predict", str(bundle), "-q", *argv])
    err = capsys.readouterr().err
    assert code == case.code, err
    if case.code:
        assert len(err.strip().splitlines()) == 1, err
        for culprit in case.culprit:
            assert culprit in err, (culprit, err)
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "nothing half-written"


def _score_data(name: str, text: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        (folder / name).write_text(text)
        return ["--data", str(folder / name)]
    return write


def _score_corrupt_image(folder: Path) -> list[str]:
    return _corrupt_image(folder)[:2]


SCORE_CASES = [
    Case("data-file-missing", lambda f: ["--data", str(f / "nope.csv")], 4,
         ("nope.csv", "does not exist")),
    Case("data-file-empty", _score_data("rows.csv", "id,image,text\n"), 4,
         ("rows.csv", "no rows")),
    Case("data-without-the-bundle-columns",
         _score_data("rows.csv", "id,photo,caption\na,x.png,hi\n"), 4,
         ("none of the bundle's input columns", "'image'", "'text'", "rename")),
    Case("data-without-one-bundle-column", _score_data("rows.csv", "id,text\na,red\n"), 4,
         ("no column 'image'", "--allow-missing image")),
    Case("data-unsupported-extension", _score_data("rows.xlsx", "x"), 2,
         ("rows.xlsx", ".parquet")),
    Case("data-with-a-corrupt-image", _score_corrupt_image, 4,
         ("bad.png", "rows 0-1", "kept")),
    Case("data-with-an-empty-id", _score_data("rows.csv", "id,image,text\na,,red\n,,blue\n"),
         4, ("row 1 has no value in the id column 'id'", "fill in")),
    Case("shard-rows-zero",
         lambda f: [*_score_data("rows.csv", "id,text\na,red\n")(f), "--shard-rows", "0"], 2,
         ("--shard-rows", "positive")),
]


@pytest.mark.parametrize("case", SCORE_CASES, ids=[c.id for c in SCORE_CASES])
def test_bad_score_input(case: Case, bundle: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """``ensemble score``: the same one-line errors, and no shard is left behind."""
    argv = case.write(tmp_path)
    code = main(["score", str(bundle), "-q", "--out", str(tmp_path / "scores"), *argv])
    err = capsys.readouterr().err
    assert code == case.code, err
    assert len(err.strip().splitlines()) == 1, err
    for culprit in case.culprit:
        assert culprit in err, (culprit, err)
    assert not list((tmp_path / "scores").glob("*.parquet"))
    assert not list((tmp_path / "scores").glob(".*"))
