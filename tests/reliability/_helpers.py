"""Helpers shared by the reliability tests (a plain module: no conftest.py in this folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _cli_runner import REPO, cli_env
from _tiny_data import CLASSES, make_dataset

HERE = Path(__file__).resolve().parent
#: Fields that hold wall-clock measurements, not results.
WALL_CLOCK = frozenset({"seconds", "samples_per_second", "finished"})


def run_python(script: Path | str, *args: str, timeout: float = 240,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT ARGS`` (a file, or ``-c`` code) in a fresh process with one thread."""
    command = [sys.executable, *(["-c", script] if isinstance(script, str) else [str(script)])]
    env = {**cli_env(), "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(REPO)]),
           **(extra_env or {})}
    return subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_killed(result: subprocess.CompletedProcess[str]) -> None:
    """The process ended by SIGKILL (it killed itself where the test said)."""
    assert result.returncode == -signal.SIGKILL, (
        f"expected death by SIGKILL, got exit {result.returncode}:\n{result.stderr[-3000:]}")


def debris(root: Path) -> list[str]:
    """Temporary files and folders of writers (``.<name>.<host>-<pid>.<random>.tmp``)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*.tmp"))


def _normalise(value: Any, run_dir: str) -> Any:
    if isinstance(value, dict):
        return {k: "<sha256 of a JSON file: compared by content>" if k.endswith(".json")
                else _normalise(v, run_dir) for k, v in value.items() if k not in WALL_CLOCK}
    if isinstance(value, list):
        return [_normalise(v, run_dir) for v in value]
    if isinstance(value, str):
        return value.replace(run_dir, "<run>")
    return value


def run_tree(run_dir: Path) -> dict[str, Any]:
    """Every file of a run: JSON with the run's own path, wall-clock fields and the digests
    of JSON files (which hold both) taken out; everything else (safetensors, report.md,
    plots) as bytes."""
    files: dict[str, Any] = {}
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(run_dir).as_posix()
        if path.suffix == ".json":
            files[relative] = _normalise(json.loads(path.read_text()), str(run_dir))
        else:
            files[relative] = path.read_bytes()
    return files


def assert_same_tree(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if got[name] != expected[name]]
    assert not different, f"files differ between the two runs: {different}"


def unwritable(tmp_path: Path) -> Path:
    """A directory nothing can be created in: read-only (chmod 555) for a normal user; as
    root, which ignores permissions, a path below a regular file."""
    if os.geteuid() != 0:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "out"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "out"


def tiny_predictor(text_checkpoint: Path, class_names: Sequence[str] = CLASSES) -> Any:
    """Random tiny image + text experts and a voting combiner fitted on their logits."""
    from ensemble import FusionPredictor
    from ensemble.combiners import create_combiner
    from ensemble.experts import ImageExpert, TextExpert
    from ensemble.logits import LogitSet

    experts = {"image": ImageExpert("test_resnet", list(class_names), pretrained=False,
                                    image_size=32),
               "text": TextExpert(str(text_checkpoint), list(class_names))}
    data = make_dataset(12)
    logits = LogitSet.from_experts(experts, data, split="validation")
    voting = create_combiner("voting").fit(logits, np.asarray(data["label"]))
    return FusionPredictor(experts, voting)


def resign(root: Path) -> None:
    """Rewrite a bundle's manifest over the bundle as it now is: a malicious bundle, not a
    tampered one, so the checksums pass and only the loader itself stands in the way."""
    from ensemble._io import sha256_file

    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {p.relative_to(root).as_posix(): sha256_file(p)
                         for p in sorted(root.rglob("*"))
                         if p.is_file() and p.name != "manifest.json"}
    (root / "manifest.json").write_text(json.dumps(manifest))
