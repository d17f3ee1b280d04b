"""CP-SAT calls that keep the solve's deadline and honour cancellation.

Every CP-SAT call of the planner goes through :func:`run_cpsat`: it gets what is left of the one
deadline as its time limit, and a watchdog thread stops it when it overruns that by
:data:`WATCHDOG_GRACE_S` or when the caller's ``should_stop()`` turns true (then
:class:`Cancelled` is raised).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from ortools.sat.python import cp_model

#: Seconds a CP-SAT call may run past its limit before the watchdog stops it.
WATCHDOG_GRACE_S = 0.25


class Cancelled(Exception):
    """``should_stop()`` turned true: the caller abandoned the solve."""


def check_stop(should_stop: Callable[[], bool] | None) -> None:
    """Raise :class:`Cancelled` when the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled("the solve was cancelled")


@contextlib.contextmanager
def watchdog(solver: cp_model.CpSolver, deadline: float,
             should_stop: Callable[[], bool] | None):
    """Stop ``solver`` when ``should_stop()`` turns true or the deadline (plus a grace) passes,
    whether or not CP-SAT honours its own limit."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            if (should_stop is not None and should_stop()) or \
                    time.monotonic() > deadline + WATCHDOG_GRACE_S:
                solver.stop_search()
                return

    thread = threading.Thread(target=watch, name="moeplan-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_cpsat(model: cp_model.CpModel, deadline: float, workers: int, seed: int,
              should_stop: Callable[[], bool] | None,
              callback: cp_model.CpSolverSolutionCallback | None = None,
              interleave: bool = False) -> tuple[cp_model.CpSolver, int]:
    """Solve ``model`` by ``deadline`` (a watchdog enforces it). With ``interleave`` the workers
    take turns (CP-SAT's interleaved search): which of several optimal solutions comes back no
    longer depends on thread timing."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.interleave_search = interleave
    with watchdog(solver, deadline, should_stop):
        status = solver.solve(model, callback)
    if should_stop is not None and should_stop():
        raise Cancelled("the solve was cancelled")
    if status == cp_model.MODEL_INVALID:  # a bug in the model, said loudly
        raise RuntimeError(f"CP-SAT rejected the planner's model: {model.validate()}")
    return solver, status


# ----------------------------------------------------------------------------------------------
# Candidates, generated lazily by GPUs per instance
