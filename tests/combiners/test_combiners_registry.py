"""The decorator-based registry."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.combiners import (
    COMBINERS,
    Combiner,
    create_combiner,
    get_combiner_class,
    list_combiners,
    load_combiner,
    register_combiner,
)
from ensemble.exceptions import ConfigError, UnknownNameError


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'stacking'") as info:
        create_combiner("stakcing")
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownNameError, match="Registered"):
        get_combiner_class("zzz")


def test_unknown_parameter_lists_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"no parameter.*'temperature'.*accepts"):
        create_combiner("voting", temperature=2.0)


def test_a_new_combiner_plugs_in_without_core_edits(tmp_path) -> None:
    @register_combiner("first_expert")
    class FirstExpert(Combiner):
        """Trusts the first expert only (a test plug-in)."""

        def __init__(self, *, calibrate: bool = False) -> None:
            self.calibrate = calibrate

        def _fit(self, data, y) -> None:
            self.fitted_rows_ = data.n_rows

        def _log_proba(self, data) -> np.ndarray:
            return data.log_probs[:, 0]

    try:
        assert "first_expert" in list_combiners()
        rng = np.random.default_rng(0)
        logits = {"a": rng.normal(size=(20, 3)), "b": rng.normal(size=(20, 3))}
        combiner = create_combiner("first_expert").fit(logits, rng.integers(0, 3, 20))
        combiner.save(tmp_path / "plugin")
        loaded = load_combiner(tmp_path / "plugin")
        np.testing.assert_array_equal(loaded.predict_proba(logits), combiner.predict_proba(logits))
        with pytest.raises(ConfigError, match="already taken"):
            register_combiner("first_expert")(type("Other", (Combiner,), {}))
    finally:
        COMBINERS.unregister("first_expert")


def test_bad_registry_name() -> None:
    with pytest.raises(ConfigError, match="non-empty string"):
        register_combiner("")
