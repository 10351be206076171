"""Recipe parsing: typed dataclasses, errors that name the key, overrides, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ensemble.exceptions import ConfigError, UnknownNameError
from ensemble.recipe import (
    CombinerConfig,
    Recipe,
    apply_overrides,
    fingerprint,
    load_recipe,
    recipe_from_dict,
)

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "name": "demo",
    "data": {"source": "synthetic", "options": {"n_train": 8}},
    "experts": {"image": {"checkpoint": "test_resnet", "options": {"pretrained": False},
                          "training": {"epochs": 1}}},
    "combiners": ["voting", {"name": "stacking", "label": "stack"}],
}


def _with(**changes: object) -> dict:
    data = apply_overrides(BASE, [])
    data.update(changes)
    return data


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_parse(path: Path) -> None:
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe) and recipe.name == path.stem
    assert recipe.bundle_combiner in [c.label for c in recipe.combiners]


def test_quickstart_is_the_readme_job() -> None:
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert recipe.data.source == "emoji"
    assert recipe.experts["image"].checkpoint == "timm/tf_efficientnet_lite0.in1k"
    assert recipe.experts["text"].checkpoint == "sentence-transformers/all-MiniLM-L6-v2"
    assert {c.name for c in recipe.combiners} == {"voting", "stacking", "gating", "selection",
                                                   "feature_stacking", "auto"}
    assert recipe.bundle_combiner == "auto"


def test_shorthand_and_defaults() -> None:
    recipe = recipe_from_dict(BASE)
    # No bundle.combiner: the bundle uses auto, appended because the recipe lacks it.
    assert recipe.combiners == [CombinerConfig("voting", "voting"),
                                CombinerConfig("stacking", "stack"),
                                CombinerConfig("auto", "auto")]
    image = recipe.experts["image"]
    assert (image.type, image.column) == ("timm", "image")  # the legacy form, resolved
    assert recipe.evaluation.bootstrap == 1000 and recipe.bundle_combiner == "auto"


@pytest.mark.parametrize(("data", "key"), [
    (_with(seeed=1), "'seeed'. Did you mean 'seed'"),
    (_with(data={"source": "synthetic", "optoins": {}}), "'data.optoins'"),
    (_with(data={"source": "synthetic", "options": {"n_trian": 3}}), "'data.options.n_trian'"),
    (_with(seed="zero"), "seed must be int"),
    (_with(logits_batch_size=True), "logits_batch_size must be a number"),
    (_with(combiners="voting"), "combiners must be a list"),
    (_with(experts={"image": {"checkpoint": "x", "training": {"epohcs": 1}}}),
     "experts.image.training"),
    (_with(experts={"image": {"checkpoint": "x", "training": {"epochs": 0}}}),
     "experts.image.training: TrainingConfig.epochs"),
    (_with(experts={"image": {"checkpoint": "x", "options": {"imagesize": 3}}}),
     "'experts.image.options.imagesize'. Did you mean 'image_size'"),
    (_with(combiners=[{"name": "voting", "params": {"methd": "soft"}}]),
     "'combiners[0].params.methd'"),
    (_with(combiners=["voting", "voting"]), "combiners[1].label 'voting' is repeated"),
    (_with(run_dir="../elsewhere"), "run_dir '../elsewhere' may not contain '..'"),
    (_with(data={"source": "multimodal", "options": {"path_or_name": "../x.csv"}}),
     "data.options.path_or_name"),
    ({k: v for k, v in BASE.items() if k != "experts"}, "missing required key 'experts'"),
])
def test_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(data)
    assert key in str(info.value)


@pytest.mark.parametrize(("data", "hint"), [
    (_with(combiners=["stackin"]), r"combiners\[0\].name: .*Did you mean 'stacking'"),
    (_with(data={"source": "emojis"}), "Did you mean 'emoji'"),
    (_with(experts={"audio": {"checkpoint": "x"}}), "experts.audio.type"),
    (_with(bundle={"combiner": "stacking"}), "bundle.combiner"),
])
def test_unknown_names_suggest(data: dict, hint: str) -> None:
    with pytest.raises(UnknownNameError, match=hint):
        recipe_from_dict(data)


def test_overrides() -> None:
    data = apply_overrides(BASE, ["experts.image.training.epochs=3", "seed=7",
                                  "combiners.0.params.method=geometric",
                                  "evaluation.plots=false", "data.options.noise=0.2"])
    recipe = recipe_from_dict(data)
    assert recipe.experts["image"].training["epochs"] == 3 and recipe.seed == 7
    assert recipe.combiners[0].params == {"method": "geometric"}
    assert recipe.evaluation.plots is False and recipe.data.options["noise"] == 0.2
    assert "seed" not in BASE  # the input is not modified
    for bad in ("seed", "=3", "combiners.9.name=x"):
        with pytest.raises(ConfigError, match="--set"):
            apply_overrides(BASE, [bad])


def test_load_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    named = tmp_path / "mine.yaml"
    named.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "name"}))
    assert load_recipe(named).name == "mine"


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_recipe_is_not_rewritten_by_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One YAML has one fingerprint wherever it runs: local paths are kept as written."""
    recipe_file = tmp_path / "my.yaml"
    recipe_file.write_text(
        "name: mine\ndata: {source: multimodal, options: {path_or_name: data/pets.csv}}\n"
        "experts: {image: {checkpoint: test_resnet}}\ncombiners: [voting]\n")
    (tmp_path / "here" / "data").mkdir(parents=True)
    (tmp_path / "here" / "data" / "pets.csv").write_text("image,text,label\n")
    (tmp_path / "elsewhere").mkdir()
    prints = []
    for folder in ("here", "elsewhere"):
        monkeypatch.chdir(tmp_path / folder)
        recipe = load_recipe(recipe_file)
        assert recipe.data.options["path_or_name"] == "data/pets.csv"
        prints.append(fingerprint(recipe.to_dict()))
    assert prints[0] == prints[1]


def test_numbers_written_as_text_are_read_as_numbers() -> None:
    recipe = recipe_from_dict(_with(
        experts={"image": {"checkpoint": "x", "training": {"learning_rate": "1e-3"}}},
        logits_batch_size="64"))
    assert recipe.logits_batch_size == 64
    with pytest.raises(ConfigError, match=r"experts.image.training.learning_rate.*'fast'"):
        recipe_from_dict(_with(experts={"image": {"checkpoint": "x",
                                                   "training": {"learning_rate": "fast"}}}))


@pytest.mark.parametrize(("expert", "message"), [
    ({"type": "bagged", "column": "image"}, "'bagged' is not a kind a recipe can build"),
    ({"type": "sklearn", "column": "meta", "checkpoint": "x"}, "takes no checkpoint"),
    ({"type": "timm", "column": "image"}, "checkpoint is missing"),
    ({"type": "timm", "column": "../image", "checkpoint": "x"}, "not a plain column name"),
    ({"type": "sklearn", "column": "meta", "training": {"epochs": 1}}, "no training options"),
])
def test_expert_entries_are_checked(expert: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(_with(experts={"a": expert}))


def test_new_form_experts_keep_their_type_and_column() -> None:
    recipe = recipe_from_dict(_with(experts={
        "photo": {"type": "timm", "column": "image", "checkpoint": "test_resnet"},
        "meta": {"type": "sklearn", "column": "meta"}}))
    assert [(e.type, e.column) for e in recipe.experts.values()] == [("timm", "image"),
                                                                    ("sklearn", "meta")]
