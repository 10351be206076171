"""Issue 15, item 7: a text expert warns when its tokenizer does not know the data's words."""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import pytest

from ensemble.experts import TextExpert
from ensemble.testing import build_tiny_text_checkpoint


def _data(texts: list[str]) -> datasets.Dataset:
    labels = ["a", "b"] * (len(texts) // 2)
    return datasets.Dataset.from_dict({"id": [str(i) for i in range(len(texts))],
                                       "text": texts, "label": labels})


def test_mostly_unknown_words_warn(tmp_path: Path) -> None:
    checkpoint = build_tiny_text_checkpoint(tmp_path / "tiny", ["red", "blue", "apple"])
    expert = TextExpert(str(checkpoint), ["a", "b"], max_length=8)
    train = _data(["zebra quokka", "walrus okapi"] * 4)
    with pytest.warns(UserWarning, match=r"100% of the tokens of column 'text' are unknown"):
        expert.fit(train, epochs=1, batch_size=4, progress=False)


def test_known_words_do_not_warn(tmp_path: Path) -> None:
    checkpoint = build_tiny_text_checkpoint(tmp_path / "tiny", ["red", "blue", "apple"])
    expert = TextExpert(str(checkpoint), ["a", "b"], max_length=8)
    train = _data(["red apple", "blue apple"] * 4)
    assert expert.unknown_token_share(train["text"]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        expert.warn_unknown_tokens(train)
