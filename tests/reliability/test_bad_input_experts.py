"""Bad input around experts over named columns (issue 10), in the style of
test_bad_input_battery.py: each case raises a typed ``ensemble`` error (or exits with the CLI
status of one) whose message names the bad value and the fix, and leaves nothing behind.

Unit-level cases of each kind live next to it: tests/experts/test_tabular_expert.py,
tests/experts/test_precomputed_expert.py, tests/pipeline/test_predictor_inputs.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _helpers import debris
from datasets import Dataset, DatasetDict
from threadpoolctl import threadpool_limits

from ensemble import FusionPredictor
from ensemble.cli import main
from ensemble.combiners import create_combiner
from ensemble.data import load_multimodal
from ensemble.exceptions import (
    ArtifactError,
    ClassMismatchError,
    ConfigError,
    DataError,
    EnsembleError,
    InvalidTabularError,
    InvalidTextError,
    ModalityError,
    UnknownNameError,
)
from ensemble.experts import create_expert, load_expert
from ensemble.logits import LogitSet
from ensemble.recipe import load_recipe

CLASSES = ["cat", "dog", "fox"]
IDS = [f"ex-{i}" for i in range(30)]


@dataclass
class Env:
    """A fitted predictor (``meta``: sklearn on column ``meta``; ``vendor``: precomputed
    scores keyed by column ``id``), its scores table, a folder for inputs a case makes and
    ``out``, where an artifact would go (it must stay absent)."""

    predictor: FusionPredictor
    scores: Path
    files: Path
    out: Path
    capsys: pytest.CaptureFixture[str]

    def table(self, name: str, values: Any, *, ids: list[str] = IDS,
              columns: list[str] = CLASSES) -> str:
        frame = pd.DataFrame(np.asarray(values, dtype=float), columns=columns)
        frame.insert(0, "id", ids)
        frame.to_csv(self.files / name, index=False)
        return str(self.files / name)

    def recipe(self, experts: str) -> str:
        path = self.files / "recipe.yaml"
        path.write_text("name: bad\ndata: {source: synthetic}\nexperts:\n" + experts
                        + "combiners: [voting]\n")
        return str(path)

    def cli(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        return code, self.capsys.readouterr().err


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Env], Any]
    #: An exception type, or a CLI exit status.
    expect: type[EnsembleError] | int
    #: Texts the message (or the CLI's stderr) must contain: the bad value and the fix.
    culprit: tuple[str, ...]

    @property
    def outcome(self) -> str:
        return f"exit {self.expect}" if isinstance(self.expect, int) else self.expect.__name__


def _dataset(ids: list[str] = IDS) -> Dataset:
    return Dataset.from_dict({"id": ids, "label": [CLASSES[int(i.split("-")[1]) % 3]
                                                  for i in ids]})


def _probabilities(n: int = len(IDS)) -> np.ndarray:
    proba = np.full((n, 3), 0.25)
    proba[np.arange(n), np.arange(n) % 3] = 0.5
    return proba


def _precomputed(path: str, **options: Any) -> Any:
    return create_expert("precomputed", path=path, labels=CLASSES, **options)


def _with_nan(env: Env) -> str:
    values = _probabilities()
    values[4, 2] = np.nan
    return env.table("nan.csv", values)


def _meta_rows(n: int) -> list[dict[str, Any]]:
    return [{"x": float(i % 3), "kind": ["a", "b", "c"][i % 3]} for i in range(n)]


def _tabular_csv_with_a_word(env: Env) -> Any:
    rows = Dataset.from_dict({"title": ["red", "blue", "red", "blue"],
                              "price": ["1", "2.5", "cheap", "3"], "kind": ["a", "b", "a", "b"]})
    return load_multimodal(DatasetDict(train=rows), inputs={"title": "text", "meta": ["price"]},
                           label_column="kind")


def _tfidf() -> Any:
    """A tfidf expert fitted on column ``title`` of a tiny dataset."""
    data = _dataset().add_column("title", [["a cat nap", "a dog bone", "a red fox"][i % 3]
                                           for i in range(len(IDS))])
    return create_expert("tfidf", column="title", labels=CLASSES).fit(data)


def _tampered_tfidf(env: Env) -> Any:
    folder = _tfidf().save_pretrained(env.files / "title")
    saved = folder / "pipeline.skops"
    saved.write_bytes(saved.read_bytes() + b"\0")
    return load_expert(folder)


def _tampered_audio(env: Env) -> Any:
    """A saved transformers-audio expert whose weights changed after saving."""
    from ensemble.testing import build_tiny_audio_checkpoint

    checkpoint = build_tiny_audio_checkpoint(env.files / "tiny-wav2vec2")
    expert = create_expert("transformers-audio", str(checkpoint), column="clip",
                           labels=CLASSES, pretrained=False)
    folder = expert.save_pretrained(env.files / "clip")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # the last tensor's values; the header still parses
    weights.write_bytes(bytes(data))
    return load_expert(folder)


def _merge_same_name(env: Env) -> Any:
    logits = LogitSet({"meta": np.zeros((2, 3))}, CLASSES, ids=["a", "b"])
    return logits.merge(LogitSet({"meta": np.ones((2, 3))}, CLASSES, ids=["a", "b"]))


def _unregistered_kind(env: Env) -> Any:
    folder = env.predictor.experts["meta"].save_pretrained(env.files / "meta")
    text = (folder / "ensemble.json").read_text().replace('"kind": "sklearn"',
                                                          '"kind": "sklearn_plugin"')
    (folder / "ensemble.json").write_text(text)
    return load_expert(folder)


DUPLICATE = "  meta: {type: sklearn, column: meta}\n  meta: {type: precomputed, column: id}\n"

CASES = [
    # -- experts' names ---------------------------------------------------------------------
    Case("recipe-two-experts-with-one-name", lambda e: load_recipe(
        e.recipe(DUPLICATE)), ConfigError, ("'meta'", "twice")),
    Case("logit-sets-with-one-expert-name", _merge_same_name, ModalityError,
         ("['meta']", "rename one")),
    # -- inputs at predict time ---------------------------------------------------------------
    Case("predict-unknown-column", lambda e: e.predictor.predict(
        {"metta": _meta_rows(1), "id": ["ex-0"]}), ModalityError,
        ("unknown input column 'metta'", "Did you mean 'meta'?")),
    Case("predict-unknown-column-in-a-row", lambda e: e.predictor.predict(
        [{"meta": _meta_rows(1)[0], "ID": "ex-0"}]), ModalityError,
        ("unknown input column 'ID'", "This predictor reads: meta")),
    Case("predict-expert-name-for-its-column", lambda e: e.predictor.predict(
        {"vendor": ["ex-0"]}), ModalityError, ("'vendor' is an expert", "('id')")),
    Case("predict-id-without-scores", lambda e: e.predictor.predict(
        {"id": ["ex-0", "nobody"], "meta": _meta_rows(2)}), DataError,
        ("['nobody']", "on_missing='mask'")),
    # -- precomputed files ----------------------------------------------------------------------
    Case("precomputed-misses-ids", lambda e: _precomputed(e.table(
        "short.csv", _probabilities(28), ids=IDS[:28])).fit(_dataset()), DataError,
        ("2 example id(s)", "['ex-28', 'ex-29']", "on_missing='mask'")),
    Case("precomputed-has-extra-ids", lambda e: _precomputed(str(e.scores)).check_ids(
        IDS[:27]), DataError, ("3 id(s) that are in no split", "'ex-27'", "id_column=")),
    Case("precomputed-other-class-names", lambda e: _precomputed(e.table(
        "wolf.csv", _probabilities(), columns=["cat", "dog", "wolf"])).fit(_dataset()),
        ClassMismatchError, ("['fox']", "['wolf']", "one column per class")),
    Case("precomputed-nan", lambda e: _precomputed(_with_nan(e)).fit(_dataset()), DataError,
         ("id 'ex-4'", "NaN", "fix the scores or drop those rows")),
    Case("precomputed-logits-read-as-probabilities", lambda e: _precomputed(e.table(
        "logits.csv", 4.0 * _probabilities())).fit(_dataset()), DataError,
        ("id 'ex-0'", "scores='logits'")),
    Case("precomputed-unknown-file-type", lambda e: _precomputed(str(
        e.files / "scores.csvv")).fit(_dataset()), ConfigError, ("scores.csvv", "must be one of")),
    Case("precomputed-missing-file", lambda e: _precomputed(str(
        e.files / "scores.csv")).fit(_dataset()), DataError, ("scores.csv", "check the path")),
    # -- tabular ----------------------------------------------------------------------------------
    Case("tabular-string-in-a-numeric-field", lambda e: e.predictor.predict(
        {"meta": [{"x": "cheap", "kind": "a"}], "id": ["ex-0"]}), InvalidTabularError,
        ("field 'x'", "'cheap'", "give a number or None")),
    Case("tabular-string-in-a-numeric-column-at-load", _tabular_csv_with_a_word,
         InvalidTabularError, ("column 'price'", "row 2 of split 'train'", "'cheap'",
                               "declare the column categorical")),
    Case("tabular-row-not-a-mapping", lambda e: e.predictor.predict(
        {"meta": ["x=1"], "id": ["ex-0"]}), InvalidTabularError,
        ("'x=1'", "mapping {field: value}")),
    # -- tfidf texts ------------------------------------------------------------------------------
    Case("tfidf-text-not-a-string", lambda e: _tfidf().predict_logits(["a fox", 7]),
         InvalidTextError, ("row 1 of column 'title'", "int (7)", "None for a missing text")),
    Case("tfidf-tampered-file", _tampered_tfidf, ArtifactError,
         ("pipeline.skops", "does not match the fingerprint", "Re-save the expert")),
    # -- audio ------------------------------------------------------------------------------------
    Case("audio-tampered-weights", _tampered_audio, ArtifactError,
         ("does not match the fingerprint", "Re-save the expert")),
    # -- kinds and recipes ------------------------------------------------------------------------
    Case("create-unknown-expert-kind", lambda e: create_expert(
        "sklaern", column="meta", labels=CLASSES), UnknownNameError,
        ("'sklaern'", "Did you mean 'sklearn'?")),
    Case("load-expert-of-an-unregistered-kind", _unregistered_kind, ArtifactError,
         ("'sklearn_plugin'", "import the module that registers it")),
    Case("recipe-unknown-expert-type", lambda e: load_recipe(e.recipe(
        "  meta: {type: sklaern, column: meta}\n")), UnknownNameError,
        ("experts.meta.type", "'sklaern'", "Did you mean 'sklearn'?")),
    Case("recipe-expert-without-its-column", lambda e: load_recipe(e.recipe(
        "  meta: {type: sklearn}\n")), ConfigError,
        ("experts.meta.column is missing", "name the input column")),
    Case("recipe-checkpoint-for-a-kind-without-one", lambda e: load_recipe(e.recipe(
        "  meta: {type: sklearn, column: meta, checkpoint: resnet18}\n")), ConfigError,
        ("experts.meta.checkpoint", "takes no checkpoint")),
    Case("cli-run-unknown-expert-type", lambda e: e.cli("run", e.recipe(
        "  meta: {type: sklaern, column: meta}\n"), "--run-dir", str(e.out), "-q"), 2,
        ("'sklaern'", "Did you mean 'sklearn'?")),
    Case("cli-run-expert-without-its-column", lambda e: e.cli("run", e.recipe(
        "  meta: {type: sklearn}\n"), "--run-dir", str(e.out), "-q"), 2,
        ("experts.meta.column is missing",)),
]


def _case(param: Any) -> Case:
    return param.values[0] if hasattr(param, "values") else param


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scores") / "scores.csv"
    frame = pd.DataFrame(_probabilities(), columns=CLASSES)
    frame.insert(0, "id", IDS)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def predictor(scores: Path) -> Iterator[FusionPredictor]:
    with threadpool_limits(limits=1, user_api="openmp"):
        data = _dataset().add_column("meta", _meta_rows(len(IDS)))
        meta = create_expert("sklearn", column="meta", labels=CLASSES,
                             estimator="sklearn.linear_model.LogisticRegression")
        experts = {"meta": meta.fit(data), "vendor": _precomputed(str(scores))}
        logits = LogitSet.from_experts(experts, data).allow_leakage()
        yield FusionPredictor(experts, create_combiner("voting").fit(logits, data["label"]))


def test_the_cases_have_unique_ids_and_name_a_value_and_a_fix() -> None:
    cases = [_case(c) for c in CASES]
    assert len({c.id for c in cases}) == len(cases) >= 20
    assert all(c.culprit for c in cases)


@pytest.mark.parametrize("case", CASES, ids=[f"{_case(c).id}--{_case(c).outcome}"
                                             for c in CASES])
def test_bad_input(case: Case, predictor: FusionPredictor, scores: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "files").mkdir()
    env = Env(predictor, scores, tmp_path / "files", tmp_path / "out", capsys)
    if isinstance(case.expect, int):
        code, stderr = case.run(env)
        assert code == case.expect, stderr
        message = stderr
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    else:
        with pytest.raises(Exception) as info:  # the type is asserted below
            case.run(env)
        assert isinstance(info.value, case.expect), repr(info.value)
        message = str(info.value)
    missing = [text for text in case.culprit if text not in message]
    assert not missing, f"{missing} not in: {message}"
    assert not env.out.exists(), "a failed case left an output behind"
    assert debris(tmp_path) == []
