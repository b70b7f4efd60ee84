"""Layering rules, checked in fresh interpreters (sys.modules does not lie)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN_IN_SEARCHERS = ("workbench", "textual", "sqlite_utils", "ray")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_searchers_never_import_workbench_tui_store_or_ray() -> None:
    code = (
        "import searchers, searchers.spaces, searchers.constraints, searchers.base\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.walk_packages(searchers.__path__, 'searchers.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    loaded = _modules_after(code)
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN_IN_SEARCHERS)
    assert not bad, f"searchers/ imported {bad}"


def test_searcher_core_is_importable_without_torch() -> None:
    loaded = _modules_after("import searchers, searchers.spaces")
    assert "torch" not in loaded
