"""Loading never runs code from the loaded files; paths cannot escape their folder.

Covered elsewhere and not repeated here: a pickle planted as a LogitSet
(tests/test_logits.py::test_planted_pickle_is_refused_and_never_unpickled); a bundle file
modified after saving, files missing or not in the manifest, ``../`` and absolute paths in
the manifest, symlinks (tests/pipeline/test_predictor.py::test_load_refuses_damaged_bundles
and ::test_load_refuses_symlinks_and_non_bundles); ``..`` in a recipe's run_dir and data
paths (tests/pipeline/test_recipe.py::test_errors_name_the_key).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from _cli_runner import REPO
from _helpers import resign, tiny_predictor
from _tiny_data import CLASSES

from ensemble import FusionPredictor
from ensemble.combiners import load_combiner
from ensemble.exceptions import ArtifactError, ConfigError
from ensemble.experts import TextExpert, load_expert
from ensemble.experts.training import TrainingConfig, train_classifier
from ensemble.recipe import apply_overrides, recipe_from_dict


class Planted:
    """Unpickling this writes ``marker``: proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


@pytest.fixture(scope="module")
def bundle(tiny_text_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_predictor(tiny_text_checkpoint).save(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture
def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- planted pickles --------------------------------------------------------------------------


def _plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Planted(marker)))


def _plant_torch_pickle(path: Path, marker: Path) -> None:
    torch.save(Planted(marker), path)  # a genuine torch file whose pickle runs code


def _load_bundle(root: Path) -> Any:
    resign(root)
    return FusionPredictor.load(root)


PLANTS = {
    # where the pickle goes (relative to the bundle) -> how the artifact is then loaded
    "expert-weights": ("experts/image/model.safetensors", lambda b: load_expert(b / "experts" /
                                                                             "image")),
    "combiner-weights": ("combiner/model.safetensors", lambda b: load_combiner(b / "combiner")),
    "bundle-expert-weights": ("experts/text/model.safetensors", _load_bundle),
    "bundle-combiner-weights": ("combiner/model.safetensors", _load_bundle),
}


@pytest.mark.parametrize("case", sorted(PLANTS))
@pytest.mark.parametrize("plant", [_plant_pickle, _plant_torch_pickle],
                         ids=["raw-pickle", "torch-save-file"])
def test_a_planted_pickle_is_refused_and_never_runs(copy: Path, tmp_path: Path, case: str,
                                                    plant: Callable[[Path, Path], None]) -> None:
    relative, load = PLANTS[case]
    marker = tmp_path / "marker"
    plant(copy / relative, marker)
    with pytest.raises(ArtifactError, match=re.escape(Path(relative).name)):
        load(copy)
    assert not marker.exists()


def test_a_pickle_planted_as_an_optimizer_checkpoint_is_refused(tmp_path: Path) -> None:
    rows = [{"x": torch.randn(4), "labels": i % 2} for i in range(4)]

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([r["x"] for r in batch]),
                "labels": torch.tensor([r["labels"] for r in batch])}

    def fit() -> None:
        train_classifier(torch.nn.Linear(4, 2), lambda m, b: m(b["x"]), rows,
                         collate_train=collate, collate_eval=collate, train_labels=[0, 1, 0, 1],
                         n_classes=2, config=TrainingConfig(epochs=2, batch_size=2,
                                                            progress=False, resume=True,
                                                            output_dir=str(tmp_path / "run")))

    fit()
    marker = tmp_path / "marker"
    _plant_torch_pickle(tmp_path / "run" / "checkpoint" / "optimizer.pt", marker)
    with pytest.raises(ArtifactError, match=r"optimizer\.pt|unreadable"):
        fit()
    assert not marker.exists()


def test_an_expert_config_cannot_point_timm_at_a_pickle(copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    _plant_torch_pickle(copy / "experts" / "image" / "weights.pth", marker)
    weights = str(copy / "experts" / "image" / "weights.pth")
    _edit(copy / "experts" / "image" / "ensemble.json",
          lambda c: c["params"]["model_kwargs"].update(checkpoint_path=weights))
    _edit(copy / "experts" / "image" / "config.json",  # timm's own config, too
          lambda c: c["model_args"].update(checkpoint_path=weights))
    resign(copy)
    # Ignored: a saved expert's weights come from its model.safetensors only.
    FusionPredictor.load(copy).predict(texts=["red"])
    assert not marker.exists()


# -- paths that leave their folder ------------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside", "/tmp/outside", "experts/../../outside"],
                         ids=["dot-dot", "absolute", "dot-dot-inside"])
@pytest.mark.parametrize("key", ["experts", "combiner"])
def test_bundle_config_paths_cannot_leave_the_bundle(copy: Path, key: str, path: str) -> None:
    if key == "experts":
        _edit(copy / "config.json", lambda c: c["experts"].update(image=path))
    else:
        _edit(copy / "config.json", lambda c: c.update(combiner=path))
    resign(copy)
    with pytest.raises(ArtifactError, match="leaves the bundle"):
        FusionPredictor.load(copy)


BASE = {"name": "demo", "data": {"source": "synthetic"},
        "experts": {"image": {"checkpoint": "test_resnet", "options": {"pretrained": False}}},
        "combiners": ["voting"]}


@pytest.mark.parametrize(("override", "culprit"), [
    ("run_dir=/tmp/elsewhere", "run_dir '/tmp/elsewhere' is absolute"),
    ("run_dir=~/elsewhere", "run_dir '~/elsewhere' is absolute"),
    ("data.fit_split=../../x", "data.fit_split: '../../x' is not a plain name"),
    ("data.test_split=/abs", "data.test_split: '/abs' is not a plain name"),
], ids=["absolute-run-dir", "home-run-dir", "split-with-dot-dot", "absolute-split"])
def test_recipe_paths_cannot_leave_the_run_dir(override: str, culprit: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(culprit)):
        recipe_from_dict(apply_overrides(BASE, [override]))


@pytest.mark.parametrize("name", ["../../evil", "/abs/evil", ".hidden", "a\\b"])
def test_recipe_expert_names_are_plain_folder_names(name: str) -> None:
    data = {**BASE, "experts": {name: {**BASE["experts"]["image"], "modality": "image"}}}
    with pytest.raises(ConfigError, match=re.escape(f"{name!r} is not a plain expert name")):
        recipe_from_dict(data)


# -- trust_remote_code ------------------------------------------------------------------------


@pytest.fixture
def trust_flags(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``trust_remote_code`` value given to a transformers loader."""
    seen: list[Any] = []
    for owner in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModel,
                  transformers.AutoModelForSequenceClassification):
        for name in ("from_pretrained", "from_config"):
            real = getattr(owner, name, None)
            if real is None:
                continue

            def spy(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                seen.append(kwargs.get("trust_remote_code", "not passed"))
                return _real(*args, **kwargs)

            monkeypatch.setattr(owner, name, spy)
    return seen


def test_trust_remote_code_is_off_unless_asked(tiny_text_checkpoint: Path, tmp_path: Path,
                                               trust_flags: list[Any]) -> None:
    expert = TextExpert(str(tiny_text_checkpoint), CLASSES)
    expert.save_pretrained(tmp_path / "text")
    load_expert(tmp_path / "text")
    assert trust_flags and set(trust_flags) == {False}
    trust_flags.clear()
    _ = TextExpert(str(tiny_text_checkpoint), CLASSES, trust_remote_code=True).model
    assert set(trust_flags) == {True}, "the spy sees the flag when it is turned on"


def _plant_remote_code(folder: Path, marker: Path) -> None:
    """A checkpoint whose config asks transformers to import code shipped with it."""
    _edit(folder / "config.json", lambda c: c.update(auto_map={
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}))
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    for module in ("configuration_evil.py", "modeling_evil.py"):
        (folder / module).write_text(code)


def test_remote_code_in_a_checkpoint_never_runs(tiny_text_checkpoint: Path,
                                                tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_text_checkpoint, tmp_path / "checkpoint"))
    marker = tmp_path / "marker"
    _plant_remote_code(folder, marker)
    expert = TextExpert(str(folder), CLASSES)  # the plain architecture from model_type
    assert type(expert.model).__module__.startswith("transformers.")
    expert.save_pretrained(tmp_path / "saved")
    _plant_remote_code(tmp_path / "saved", marker)
    load_expert(tmp_path / "saved")
    assert not marker.exists()


def test_docs_say_why_trust_remote_code_is_off() -> None:
    for page in ("experts.md", "reliability.md"):
        text = " ".join((REPO / "docs" / page).read_text().split())
        assert "`trust_remote_code` is off unless you turn it on" in text, page
        assert "because it runs Python code" in text, page


def test_the_library_never_unpickles() -> None:
    """Static guard: no pickle loader in the package, and torch.load only with
    weights_only=True."""
    for path in sorted((REPO / "ensemble").rglob("*.py")):
        source = path.read_text()
        for banned in ("pickle.load", "joblib.load", "allow_pickle=True", "dill."):
            assert banned not in source, f"{path.name} uses {banned}"
        for call in re.findall(r"torch\.load\([^)]*\)", source, flags=re.S):
            assert "weights_only=True" in call, f"{path.name}: {call}"
