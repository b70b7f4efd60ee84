"""The run engine: a detached coordinator per run, worker backends, launch helpers.

    from workbench.runner import start_run, launch_detached
    run_id = start_run(db_path, config)            # validated RunConfig -> a `created` run
    pid = launch_detached(db_path, run_id)         # the coordinator, in its own session
    Coordinator(db_path, run_id).run()             # or run it in this process (attached)

See :mod:`workbench.runner.coordinator` for the loop and its crash guarantees.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.runner.backend import Backend, Finished, InlineBackend, WorkerInfo, make_backend
from workbench.runner.coordinator import Coordinator
from workbench.runner.process import coordinator_argv, log_path_for, spawn_detached
from workbench.store import Store


def start_run(db_path: str | os.PathLike[str], config: object) -> int:
    """Create a run (status ``created``) from a validated :class:`~workbench.config.RunConfig`.

    The searcher is constructed once first, so what only it can check (a PONAS budget too
    small to fill its table, a parameter out of range) raises its :class:`NaswError` here,
    before anything is written, rather than in the coordinator after the run exists.
    """
    from workbench.config import check_dataset_files, make_searcher

    check_dataset_files(config)  # type: ignore[arg-type]
    make_searcher(config)  # type: ignore[arg-type]
    with Store(db_path) as store:
        run_id = store.create_run(config.to_dict())  # type: ignore[attr-defined]
        store.update_run(run_id, log_path=str(log_path_for(db_path, run_id)))
    return run_id


def launch_detached(db_path: str | os.PathLike[str], run_id: int,
                    evaluator: str | None = None) -> int:
    """Start the run's coordinator detached (new session, log file); returns its pid.

    Whether the run may be (re)started is checked here first, so every caller -- ``nasw
    resume --detach``, the TUI's ``r`` -- gets a clear :class:`NaswError` and nothing is
    spawned or written for a finished run, a run whose coordinator is alive, or a checkpoint
    that cannot be resumed safely (pickled by an older nasw, or damaged).
    """
    with Store(db_path, create=False) as store:
        store.check_resumable(run_id)
        store.check_restorable(run_id)  # LegacyStateError / StateFormatError: never unpickled
    argv = coordinator_argv(db_path, run_id)
    if evaluator is not None:
        argv += ["--evaluator", evaluator]
    log = log_path_for(db_path, run_id)
    pid = spawn_detached(argv, log)
    with Store(db_path) as store:
        store.update_run(run_id, log_path=str(log))
    return pid


def db_dir(db_path: str | os.PathLike[str]) -> Path:
    return Path(db_path).resolve().parent


__all__ = [
    "Backend", "Coordinator", "Finished", "InlineBackend", "WorkerInfo", "launch_detached",
    "make_backend", "start_run",
]
