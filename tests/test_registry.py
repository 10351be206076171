"""``Registry``: built-in kinds named by module are imported on first use only."""

from __future__ import annotations

import sys

import pytest

from ensemble.exceptions import DependencyError, UnknownNameError
from ensemble.registry import Registry


def test_builtins_import_on_use_and_unknown_names_import_nothing() -> None:
    registry: Registry[type] = Registry("widget", builtins={
        "json": "json", "absent": "ensemble_no_such_module_for_tests"})
    with pytest.raises(UnknownNameError, match=r"unknown widget 'jsn'.*'json'"):
        registry.get("jsn")
    assert "ensemble_no_such_module_for_tests" not in sys.modules
    assert "absent" in registry and "json" in registry
    with pytest.raises(DependencyError, match="widget 'absent' needs "
                                              "ensemble_no_such_module_for_tests"):
        registry.get("absent")


def test_expert_kinds_load_without_importing_the_others() -> None:
    import subprocess

    code = ("import sys; from ensemble.experts import get_expert_class; "
            "get_expert_class('sklearn'); print('torch' in sys.modules, 'timm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.split() == ["False", "False"]
