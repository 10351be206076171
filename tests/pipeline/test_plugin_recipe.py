"""A new expert kind in one file of the user's, used by name from a recipe through the CLI:
``plugins: [module]`` in the recipe, ``--plugin module`` for ``ensemble predict``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ensemble.cli import main
from ensemble.experts import EXPERTS

PLUGIN = '''
"""A plugin kind: class scores from the counts of each word seen with each class."""
import hashlib
import json
from pathlib import Path

import numpy as np

from ensemble.experts import Expert, register_expert
from ensemble.fingerprints import dataset_fingerprint


@register_expert("word_counts")
class WordCounts(Expert):
    modality = "text"

    def __init__(self, *, column="text", labels, seed=0):
        super().__init__(column=column, labels=labels, seed=seed)

    def fit(self, train, eval_dataset=None, *, config=None, label_column="label"):
        labels = self.encode_labels(train, label_column)
        counts = {}
        for text, label in zip(self.column_values(train), labels):
            for word in (text or "").split():
                counts.setdefault(word, [0] * self.num_classes)[label] += 1
        self.counts_ = counts
        self.trained_on_.append(dataset_fingerprint(train))
        return self

    def predict_logits(self, data, *, batch_size=64, return_features=False, progress=True):
        rows = []
        for text in self.column_values(data):
            scores = np.ones(self.num_classes)
            for word in (text or "").split():
                scores += np.asarray(self.counts_.get(word, [0] * self.num_classes))
            rows.append(np.log(scores / scores.sum()) if text is not None
                        else np.zeros(self.num_classes))
        logits = np.asarray(rows, dtype=np.float32)
        return (logits, logits.copy()) if return_features else logits

    def fingerprint(self):
        return hashlib.sha256(json.dumps(self.counts_, sort_keys=True).encode()).hexdigest()

    def save_pretrained(self, directory):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "counts.json").write_text(json.dumps(self.counts_))
        self.write_metadata(directory)
        return directory

    @classmethod
    def load_saved(cls, directory, metadata, **kwargs):
        expert = cls(column=metadata["column"], labels=metadata["class_names"])
        expert.counts_ = json.loads((Path(directory) / "counts.json").read_text())
        expert.check_loaded(Path(directory), metadata)
        return expert
'''

RECIPE = """
name: plugin_run
plugins: [my_word_counts]
data: {source: synthetic, options: {n_train: 48, n_validation: 32, n_test: 32}}
experts:
  words: {type: word_counts, column: text}
  image:
    type: timm
    column: image
    checkpoint: test_resnet
    options: {pretrained: false, image_size: 32}
    training: {epochs: 1, batch_size: 16, progress: false}
combiners: [voting]
evaluation: {bootstrap: 10, plots: false}
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_word_counts.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    yield "my_word_counts"
    EXPERTS.unregister("word_counts")
    sys.modules.pop("my_word_counts", None)


def test_a_plugin_kind_runs_from_a_recipe_and_predicts_from_the_cli(
        plugin_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(RECIPE)
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "-q"]) == 0
    assert "expert: words" in capsys.readouterr().out
    assert json.loads((run_dir / "experts" / "words" / "ensemble.json").read_text())[
        "kind"] == "word_counts"
    # a fresh process would not know the kind: predict names the module to import
    EXPERTS.unregister("word_counts")
    sys.modules.pop(plugin_module, None)
    bundle = str(run_dir / "bundle")
    assert main(["predict", bundle, "-q", "--input", "text=apple anchor"]) == 3
    assert "word_counts" in capsys.readouterr().err
    assert main(["predict", bundle, "-q", "--plugin", plugin_module,
                 "--input", "text=apple anchor"]) == 0
    row = json.loads(capsys.readouterr().out)["predictions"][0]
    assert row["experts"]["words"]["available"] and not row["experts"]["image"]["available"]


def test_an_unimportable_plugin_is_named(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(RECIPE.replace("my_word_counts", "no_such_plugin_module"))
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 2
    assert "plugins[0]: cannot import 'no_such_plugin_module'" in capsys.readouterr().err
