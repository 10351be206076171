"""ensemble.launch: a process's place among several, and running alone inside a group."""

from __future__ import annotations

import os

import pytest

from ensemble.exceptions import ConfigError
from ensemble.launch import Processes, alone, processes


def test_a_process_on_its_own_waits_for_nobody() -> None:
    group = processes()
    assert group == Processes() and group.is_main
    group.wait()
    assert group.share({"fresh": True}) == {"fresh": True}
    with group.main_first():
        pass
    assert group.mine("abcde") == list("abcde")


def test_each_process_takes_every_nth_item() -> None:
    shares = [Processes(rank=r, count=3).mine(range(8)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert sorted(i for share in shares for i in share) == list(range(8))
    assert not Processes(rank=1, count=2).is_main


def test_alone_hides_the_launcher_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.state import PartialState

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    PartialState._shared_state["marker"] = "outer"
    try:
        with alone():
            assert "WORLD_SIZE" not in os.environ and "RANK" not in os.environ
            assert processes() == Processes()
            assert "marker" not in PartialState._shared_state
        assert os.environ["WORLD_SIZE"] == "2" and os.environ["LOCAL_RANK"] == "1"
        assert PartialState._shared_state.get("marker") == "outer"
    finally:
        PartialState._shared_state.pop("marker", None)


def test_the_store_needs_the_launchers_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match=r"MASTER_ADDR / MASTER_PORT.*torchrun"):
        processes(via="store")


def test_fold_parallel_cross_fitting_needs_a_work_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from ensemble import crossfit

    with pytest.raises(ConfigError, match=r"parallel must be one of.*'ranks'"):
        crossfit.cross_fit(lambda: None, None, folds=2, parallel="ranks")  # type: ignore[arg-type]
    monkeypatch.setattr(crossfit, "processes",
                        lambda via="group": Processes(rank=0, count=2, via=via))
    with pytest.raises(ConfigError, match="through work_dir"):
        crossfit.cross_fit(lambda: None, None, folds=2, parallel="folds")  # type: ignore[arg-type]


def test_recipes_name_how_processes_share_the_folds() -> None:
    from ensemble.exceptions import UnknownNameError
    from ensemble.recipe import load_recipe

    recipe = "recipes/synthetic.yaml"
    assert load_recipe(recipe).cross_fit.parallel == "data"
    shared = load_recipe(recipe, ["cross_fit.folds=3", "cross_fit.parallel=folds"])
    assert shared.cross_fit.parallel == "folds"
    with pytest.raises(UnknownNameError,
                       match=r"cross_fit\.parallel.*'fold'\. Did you mean 'folds'"):
        load_recipe(recipe, ["cross_fit.folds=3", "cross_fit.parallel=fold"])
    with pytest.raises(ConfigError, match=r"cross_fit\.folds is 0"):
        load_recipe(recipe, ["cross_fit.parallel=folds"])
