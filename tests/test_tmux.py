"""The workbench in a real terminal: tmux runs ``nasw`` on a database with a live run (a real
detached coordinator), and we drive it with keys only -- runs -> detail -> candidates ->
architecture -> Pareto -> specialize -- checking each captured screen. A second drive, on
finished runs, exports a candidate as JSON (``e`` ``j``) and compares two marked runs
(``space`` ``space`` ``C``). Skipped without tmux.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_support import config_for, make_db

from workbench.config import parse_config
from workbench.runner import launch_detached, start_run
from workbench.store import Store

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]
ROOT = Path(__file__).resolve().parents[1]
SESSION = f"nasw-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_screen(*needles: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        shown = screen()
        if all(n in shown for n in needles):
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{needles} not on screen:\n{shown}")
        time.sleep(0.2)


def wait_done(condition, timeout: float = 60.0) -> int:
    """The overview's ``done/400`` count once ``condition(done)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        shown = screen()
        if "/400" in shown:
            done = int(shown.split("/400")[0].split()[-1])
            if condition(done):
                return done
        assert time.monotonic() < deadline, f"progress did not move:\n{shown}"
        time.sleep(0.2)


def keys(*names: str) -> None:
    for name in names:
        tmux("send-keys", "-t", SESSION, name)
        # a bare ESC waits for a possible escape sequence: let it time out before the next key
        time.sleep(0.8 if name == "Escape" else 0.15)


@pytest.fixture
def live_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    db = make_db(tmp_path / "nasw.db")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    config = parse_config({**config_for("live-run", budget=400), "hard_constraints": True})
    run_id = start_run(db, config)
    pid = launch_detached(db, run_id, evaluator="tui_support:slow_synthetic")
    yield db, run_id
    with Store(db) as store:
        store.send_command(run_id, "cancel")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)


def start_nasw(db: Path, cwd: Path) -> None:
    """``nasw --db DB`` in a detached 120x40 tmux session whose working directory is ``cwd``.

    ``COLUMNS``/``LINES`` are unset in the pane: once GNU readline is imported in the test
    process it exports them (``80``/``24`` without a terminal) to the C environment, unseen in
    ``os.environ`` but inherited by tmux, and Textual would take that size over the pane's."""
    nasw = Path(sys.executable).with_name("nasw")
    program = (str(nasw) if nasw.exists() else
               f"{sys.executable} -c 'import sys; from workbench.cli import main; main()'")
    command = f"cd {cwd} && unset COLUMNS LINES && TERM=xterm-256color {program} --db {db}"
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", command)


def test_keyboard_tour_in_a_real_terminal(live_db, tmp_path: Path) -> None:
    db, run_id = live_db
    shots = tmp_path / "screens"
    shots.mkdir()
    start_nasw(db, tmp_path)
    try:
        runs = wait_screen("live-run", "random-synthetic", "ponas-digits", "running")
        (shots / "runs.txt").write_text(runs)
        keys("Enter")  # newest first: the live run
        wait_screen(f"Run {run_id}", "live-run", "Progress", "/400")
        first = wait_done(lambda n: n > 0)  # the coordinator has started writing
        wait_done(lambda n: n > first)  # and the overview moves on by itself: it is live
        keys("2")
        cands = wait_screen("Accuracy", "Reward", "Feasible", "MAdds")
        (shots / "candidates.txt").write_text(cands)
        keys("Down", "Enter")  # select the second candidate: the Architecture tab opens
        arch = wait_screen("Candidate #1 ", "L0 ", "params", "skip connection")
        (shots / "architecture.txt").write_text(arch)
        keys("5")
        pareto = wait_screen("accuracy vs params", "Pareto front")
        (shots / "pareto.txt").write_text(pareto)
        keys("Escape")  # back to the runs
        wait_screen("random-synthetic", "too-tight")
        keys("Down", "Down", "Enter")  # rows: live, too-tight, ponas-digits, random
        wait_screen("Run 2 · ponas-digits", "Progress")
        keys("7")
        wait_screen("constraints, e.g.")
        time.sleep(0.5)  # the input takes the focus after the tab's first refresh
        tmux("send-keys", "-t", SESSION, "-l", "params<=45k")
        keys("Enter")
        spec = wait_screen("Best architecture for params<=45k", "optimal (proven)")
        (shots / "specialize.txt").write_text(spec)
        keys("Escape", "6")
        heat = wait_screen("importance", "72/72 cells measured")
        (shots / "table.txt").write_text(heat)
        keys("q")
        deadline = time.monotonic() + 10
        while SESSION in subprocess.run(["tmux", "ls"], capture_output=True,
                                        text=True).stdout:
            assert time.monotonic() < deadline, "nasw did not quit on q"
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_export_and_compare_in_a_real_terminal(tmp_path: Path) -> None:
    """Finished runs (no coordinator needed): ``e`` ``j`` on the Candidates tab writes
    ``run1-c<ID>.json`` into nasw's working directory with the stored genotype; ``space`` on two
    runs and ``C`` show both in the compare table with their Pareto fronts' plot."""
    db = make_db(tmp_path / "nasw.db")
    workdir = tmp_path / "work"
    workdir.mkdir()
    start_nasw(db, workdir)
    try:
        wait_screen("random-synthetic", "ponas-digits", "too-tight")
        keys("Down", "Down", "Enter")  # rows, newest first: too-tight, ponas-digits, random
        wait_screen("Run 1 · random-synthetic", "Progress")
        keys("2")
        wait_screen("Accuracy", "Reward", "Feasible", "MAdds")
        keys("Down", "Down", "e")
        chooser = wait_screen("Export candidate #", "json", "onnx", "torchscript", "dot")
        found = re.search(r"Export candidate #(\d+) of run 1\b", chooser)
        assert found, chooser
        chosen = int(found.group(1))
        target = workdir / f"run1-c{chosen}.json"
        assert f"run1-c{chosen}.json" in chooser and not target.exists()
        keys("j")
        wait_screen(f"wrote run1-c{chosen}.json", timeout=60)  # the export imports torch
        assert target.exists(), sorted(p.name for p in workdir.iterdir())
        document = json.loads(target.read_text())
        with Store(db) as store:
            candidate = store.candidate(1, chosen)
        assert document["genotype"]["choices"] == candidate["genotype"]["choices"]
        assert document["genotype"]["space"] == candidate["genotype"]["space"]
        assert document["provenance"]["run"] == 1
        assert document["provenance"]["candidate"] == chosen

        keys("Escape")  # back to the runs, the cursor still on run 1
        wait_screen("too-tight", "ponas-digits")
        keys("Up", "Space")  # marks run 2; the cursor moves down onto run 1
        wait_screen("marked 2 (C compares)")
        keys("Space")
        wait_screen("marked 1, 2 (C compares)")
        keys("C")
        compared = wait_screen("2 runs · Pareto front sizes",
                               "Pareto fronts: accuracy vs params")
        # the table: one row per marked run (label, searcher, ...); the plot's legend names both
        assert re.search(r"^\s*1 random-synt\S*\s+random\s", compared, re.MULTILINE), compared
        assert re.search(r"^\s*2 ponas-digits\s+ponas\s", compared, re.MULTILINE), compared
        legend = compared.split("Pareto fronts: accuracy vs params")[1]
        assert "1 random-synt" in legend and "2 ponas-digits" in legend, compared
        assert "too-tight" not in compared
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
