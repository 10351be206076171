"""Mean pooling for sentence-embedding checkpoints: chosen, trained, saved and reloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _tiny_data import CLASSES, make_dataset

from ensemble.exceptions import ArtifactError, ConfigError
from ensemble.experts import TextExpert, load_expert
from ensemble.experts._pooling import MeanPoolingClassifier, sentence_transformers_pooling


def _sentence_transformers_layout(source: Path, target: Path, *, mean: bool) -> Path:
    """``source`` plus the modules.json + 1_Pooling/config.json a sentence-transformers repo has."""
    shutil.copytree(source, target)
    (target / "1_Pooling").mkdir()
    (target / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]))
    (target / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_mean_tokens": mean, "pooling_mode_cls_token": not mean}))
    return target


def test_auto_pooling_follows_the_sentence_transformers_config(tiny_text_checkpoint: Path,
                                                               tmp_path: Path) -> None:
    mean_dir = _sentence_transformers_layout(tiny_text_checkpoint, tmp_path / "mean", mean=True)
    cls_dir = _sentence_transformers_layout(tiny_text_checkpoint, tmp_path / "cls", mean=False)
    assert sentence_transformers_pooling(mean_dir) == "mean"
    assert sentence_transformers_pooling(cls_dir) == "model"
    assert sentence_transformers_pooling(tiny_text_checkpoint) == "model"
    assert TextExpert(str(mean_dir), CLASSES).pooling_ == "mean"
    assert isinstance(TextExpert(str(mean_dir), CLASSES).model, MeanPoolingClassifier)
    assert TextExpert(str(mean_dir), CLASSES, pooling="model").pooling_ == "model"
    assert TextExpert(str(tiny_text_checkpoint), CLASSES).pooling_ == "model"


def test_a_pooling_folder_outside_the_checkpoint_is_ignored(tiny_text_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    folder = _sentence_transformers_layout(tiny_text_checkpoint, tmp_path / "st", mean=True)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = "../elsewhere"
    (folder / "modules.json").write_text(json.dumps(modules))
    assert sentence_transformers_pooling(folder) == "model"


def test_mean_pooling_ignores_padding(tiny_text_checkpoint: Path) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), CLASSES, pooling="mean")
    text = make_dataset(2, seed=0)["text"][0]
    alone = expert.predict_logits([text], progress=False)
    # In a batch with a longer text the first text is padded; its logits must not change.
    padded = expert.predict_logits([text, f"{text} {text} {text}"], progress=False)[:1]
    np.testing.assert_allclose(alone, padded, rtol=1e-5, atol=1e-5)


def test_mean_pooled_expert_trains_saves_and_reloads(tiny_text_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    train, held_out = make_dataset(12, seed=0), make_dataset(6, seed=1)
    expert = TextExpert(str(tiny_text_checkpoint), CLASSES, pooling="mean")
    before = expert.fingerprint()
    expert.fit(train, held_out, epochs=1, batch_size=4, learning_rate=1e-3, progress=False)
    assert expert.fingerprint() != before
    pooler = expert.model.backbone.pooler
    assert not any(p.requires_grad for p in pooler.parameters())
    loaded = load_expert(expert.save_pretrained(tmp_path / "expert"))
    assert loaded.pooling_ == "mean" and loaded.fingerprint() == expert.fingerprint()
    np.testing.assert_array_equal(loaded.predict_logits(held_out, progress=False),
                                  expert.predict_logits(held_out, progress=False))
    config = json.loads((tmp_path / "expert" / "ensemble.json").read_text())
    config["params"]["pooling"] = "max"
    (tmp_path / "expert" / "ensemble.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="'max'"):
        load_expert(tmp_path / "expert")


def test_unknown_pooling_is_refused(tiny_text_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="'max'"):
        expert = TextExpert(str(tiny_text_checkpoint), CLASSES,
                            pooling="max")  # type: ignore[arg-type]
        _ = expert.model  # validated when the model is built (the constructor only stores)
