"""The pattern guard: a pattern where fusion is worse than an expert alone (or the plain
average) beyond the noise is routed there; everywhere else the combiner keeps fusing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ensemble.combiners import Combiner, list_combiners, load_combiner
from ensemble.combiners.graph import CombinerGraph
from ensemble.combiners.pattern_routes import FUSE, apply_routes, pattern_codes
from ensemble.exceptions import ArtifactError


class _WorseWithoutAudio(Combiner):
    """Soft voting, except that a row missing the last expert gets a shuffled class order:
    a combiner that never learned a pattern."""

    registry_name = ""

    def __init__(self, *, calibrate: bool = False, pattern_guard: bool = True,
                 random_state: int | None = 0) -> None:
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
        self.random_state = random_state

    def _fit(self, data: Any, y: np.ndarray) -> None:
        self.fitted_ = True

    def _log_proba(self, data: Any) -> np.ndarray:
        probs = (np.exp(data.log_probs) * data.mask[:, :, None]).sum(axis=1)
        scores = np.log(np.maximum(probs, 1e-300))
        partial = ~data.mask[:, -1]
        scores[partial] = np.roll(scores[partial], 1, axis=1)
        return scores


def _accuracy(combiner: Combiner, logits: Any, y: np.ndarray, members: list[int]) -> float:
    mask = np.zeros((logits.n_rows, len(logits.expert_names)), dtype=bool)
    mask[:, members] = True
    return float((combiner.predict(logits.with_mask(mask)) == y).mean())


def test_the_guard_routes_a_pattern_the_combiner_gets_wrong(make: Any) -> None:
    train, y = make(900, seed=0)
    test, y_test = make(1500, seed=1)
    guarded = _WorseWithoutAudio().fit(train, y)
    unguarded = _WorseWithoutAudio(pattern_guard=False).fit(train, y)
    patterns = guarded.describe_patterns()
    assert patterns["image+text+audio"] == "fused"
    assert patterns["image+text"] != "fused"  # rerouted: to the average or an expert
    assert {c.pattern for c in guarded.pattern_checks_} == set(patterns)
    assert all(route == "fused" for route in unguarded.describe_patterns().values())
    assert _accuracy(guarded, test, y_test, [0, 1]) > _accuracy(unguarded, test, y_test,
                                                               [0, 1]) + 0.2
    assert _accuracy(guarded, test, y_test, [0, 1, 2]) == _accuracy(unguarded, test, y_test,
                                                                    [0, 1, 2])


def test_routes_survive_save_and_load_and_a_tampered_table_is_refused(
        tmp_path: Path, make: Any, combiner_factory: Any) -> None:
    train, y = make(600, seed=0)
    test, _ = make(200, seed=1, missing=0.4)
    combiner = combiner_factory("stacking").fit(train, y)
    combiner.pattern_routes_[3] = 0  # image+text: the image expert
    combiner.pattern_routes_[5] = 3  # image+audio: the average
    loaded = load_combiner(combiner.save(tmp_path / "c"))
    np.testing.assert_array_equal(loaded.pattern_routes_, combiner.pattern_routes_)
    np.testing.assert_allclose(loaded.predict_proba(test), combiner.predict_proba(test))
    assert loaded.describe_patterns()["image+audio"] == "average"

    from safetensors.numpy import load_file, save_file

    from ensemble._io import read_json, sha256_file, write_json

    tensors = load_file(tmp_path / "c" / "model.safetensors")
    tensors["pattern_routes"][3] = 2  # image+text answered by the absent audio expert
    save_file(tensors, tmp_path / "c" / "model.safetensors")
    config = read_json(tmp_path / "c" / "config.json")
    config["tensors_sha256"] = sha256_file(tmp_path / "c" / "model.safetensors")
    write_json(tmp_path / "c" / "config.json", config)
    with pytest.raises(ArtifactError, match="pattern routes"):
        load_combiner(tmp_path / "c")


def test_apply_routes_and_the_graph_agree_on_every_route(make: Any,
                                                         combiner_factory: Any) -> None:
    train, y = make(600, seed=0)
    test, _ = make(400, seed=1, missing=0.45)
    combiner = combiner_factory("voting").fit(train, y)
    combiner.pattern_routes_[:] = FUSE
    combiner.pattern_routes_[[1, 2, 4]] = [0, 1, 2]
    combiner.pattern_routes_[3] = 1  # image+text -> text
    combiner.pattern_routes_[6] = 3  # text+audio -> average
    expected = combiner.predict_logits(test)
    mask = np.asarray(test.mask)
    codes = pattern_codes(mask)
    text = test.logits["text"][codes == 3]
    np.testing.assert_allclose(np.exp(expected[codes == 3]),
                               np.exp(text) / np.exp(text).sum(1, keepdims=True), atol=1e-6)
    graph = CombinerGraph(combiner)
    with torch.no_grad():
        got = graph(torch.as_tensor(test.stacked(), dtype=torch.float32),
                    torch.as_tensor(mask)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_apply_routes_leaves_fused_rows_alone() -> None:
    mask = np.array([[True, True], [True, False]])
    log_probs = np.log(np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [1.0, 1.0]]]))
    log_probs[1, 1] = 0.0  # absent: zero-filled
    fused = np.log(np.array([[0.5, 0.5], [0.4, 0.6]]))
    routes = np.array([FUSE, 0, 1, FUSE], dtype=np.int16)
    out = apply_routes(routes, mask, log_probs.astype(np.float32), fused.copy())
    np.testing.assert_allclose(out[0], fused[0])
    np.testing.assert_allclose(np.exp(out[1]), [0.3, 0.7], atol=1e-6)


@pytest.mark.parametrize("name", list_combiners())
def test_every_builtin_combiner_takes_the_guard(name: str) -> None:
    from ensemble.combiners import get_combiner_class

    assert get_combiner_class(name)().get_params()["pattern_guard"] is True
