"""``bench/gpu_check.py`` -- the one command that records issue 10's GPU figures -- works; on a
machine without CUDA it runs its parts on the CPU and says so (a short EPNAS run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_gpu_check_runs_a_short_epnas_search_and_reports_where_it_trained(tmp_path,
                                                                          capsys) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCH))
    db = tmp_path / "check.db"
    figures = gpu_check.main(["--skip", "bench", "--skip", "ponas", "--skip", "tests",
                              "--epnas-candidates", "3", "--db", str(db),
                              "--json", str(tmp_path / "figures.json")])
    epnas = figures["epnas"]
    assert epnas["status"] == "finished" and epnas["candidates"] == 3 and epnas["ok"] == 3
    assert 0.0 < epnas["best_accuracy"] <= 1.0
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert all(device.startswith(expected) for device in epnas["trained_on"])
    assert (tmp_path / "figures.json").read_text().startswith("{")
    assert db.exists()  # the run stays, for `nasw --db check.db` (the TUI)
    assert "epnas-digits" in capsys.readouterr().out
