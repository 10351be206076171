"""The runnable examples of docs/data.md run (```python blocks; ```python no-test blocks need
real data and are skipped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def test_data_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc__"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"data.md[block {number}]", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"data.md example {number} failed: {err!r}\n{block}") from err
