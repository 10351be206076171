"""The docs' Python examples run, against the synthetic recipe's output in ``runs/synthetic``.

Blocks fenced as ```python run in order, sharing one namespace per page; blocks fenced as
```python no-test need real data or models and are skipped.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PAGES = ["getting-started.md", "predictor.md", "data.md"]
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")


def python_blocks(page: Path) -> list[str]:
    """The runnable ```python blocks of a Markdown page (not ```python no-test)."""
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", RUN_PAGES)
def test_doc_examples_run(page: str, synthetic_run: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(REPO / "docs" / page)
    assert blocks, f"{page} has no runnable examples"
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    shutil.copytree(synthetic_run, tmp_path / "runs" / "synthetic")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc__"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{page}[block {number}]", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page}, example {number} failed: {err!r}\n{block}") from err


def test_docs_links_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target, _ in _LINK.findall(page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_readme_opens_with_the_two_setup_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.split("```")[1].splitlines()
                if line and not line.startswith(("#", "bash"))]
    assert commands[0] == ('python3 -m venv .venv && .venv/bin/pip install -e ".[offline-models]"'
                           ' && .venv/bin/ensemble run recipes/quickstart.yaml')
    assert commands[1].endswith(".venv/bin/python -m pytest -q -n auto")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest -q -n auto\n" in ci  # CI runs the README's command
