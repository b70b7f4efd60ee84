"""The quickstart as a user runs it: `nasw run sample_configs/quickstart.yaml`, then `nasw show 1`.

Real training (8 MBConv candidates, 3 epochs each on digits, two CPU workers): about 1.5 min on
a busy 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
QUICKSTART = Path(__file__).parent.parent / "sample_configs" / "quickstart.yaml"
NASW = [sys.executable, "-c", "from workbench.cli import main; main()"]


def test_quickstart_finishes_with_best_validation_accuracy_above_090(tmp_path) -> None:
    db = str(tmp_path / "nasw.db")
    ran = subprocess.run([*NASW, "run", str(QUICKSTART), "--db", db], capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = subprocess.run([*NASW, "show", "1", "--json", "--db", db], capture_output=True,
                           text=True, timeout=120)
    run = json.loads(shown.stdout)
    assert run["status"] == "finished" and len(run["candidates"]) == 8
    assert all(c["status"] == "ok" and c["costs"]["params"] > 0 for c in run["candidates"])
    assert run["best_accuracy"] >= 0.90
    assert run["best"]["accuracy"] == run["best_accuracy"]
