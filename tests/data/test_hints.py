"""Messages name an option in Python and on the command line, and the flags they name exist."""

from __future__ import annotations

import pytest

from ensemble.cli import build_parser
from ensemble.data.hints import CLI_FLAGS, keyword_hint


@pytest.mark.parametrize(("keyword", "flag"), sorted(CLI_FLAGS.items()))
def test_every_named_flag_is_an_evaluate_option(keyword: str, flag: str) -> None:
    args = build_parser().parse_args(["evaluate", "--bundle", "b", "--data", "d", flag, "x"])
    assert getattr(args, keyword) == "x"


def test_keyword_hints() -> None:
    assert keyword_hint("text_column") == "text_column=<column> (CLI: --text-column NAME)"
    assert keyword_hint("id_column", None) == "id_column=None (CLI: leave out --id-column)"
    assert keyword_hint("image_column", "path") == "image_column='path' (CLI: --image-column path)"
    assert keyword_hint("allow_unseen_labels", True) == (
        "allow_unseen_labels=True (CLI: --data-option allow_unseen_labels=true)")
    assert keyword_hint("inputs", {"photo": "image"}) == (
        "inputs={'photo': 'image'} (CLI: --data-option 'inputs={photo: image}')")
