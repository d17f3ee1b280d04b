"""Where the instances are solved: local processes or Ray tasks.

Both executors run :func:`moeplan.bench.worker.run_instance` at most ``workers`` at a time and
hand each record to ``on_done`` in the parent (which writes it) as it completes. A worker that
dies, or a Ray task that fails, becomes an ERROR record with a one-line message; the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from moeplan.bench.records import BenchOptions, error_record, file_sha256, one_line
from moeplan.bench.worker import run_instance
from solver.instance import InputError

#: An instance whose worker process died this many times is recorded as ERROR.
MAX_WORKER_DEATHS = 2

OnStart = Callable[[str], None]
OnDone = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    name: str

    def run(self, paths: Sequence[str], options: BenchOptions, on_start: OnStart,
            on_done: OnDone) -> None:
        """Solve every path; ``on_start(path)`` as each is submitted, ``on_done(record)`` as
        each completes (in the calling process)."""


def make_executor(kind: str, workers: int, ray_address: str | None) -> Executor:
    if kind == "process":
        if ray_address:
            raise InputError("--ray-address: only used with --executor ray", "ray_address")
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, ray_address)
    raise InputError(f"--executor: unknown executor '{kind}' (use process or ray)", "executor")


# ----------------------------------------------------------------------------------------------
# Local processes
# ----------------------------------------------------------------------------------------------


def _worker_init(parent_pid: int) -> None:
    """In each pool process: leave Ctrl-C to the parent, and exit when the parent is gone (a
    SIGKILLed bench must not leave solvers running)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="moeplan-parent-watch", daemon=True).start()


class ProcessExecutor:
    """Local processes (spawn context), at most ``workers`` instances in flight; results are
    handed to ``on_done`` in the parent as they complete."""

    name = "process"

    def __init__(self, workers: int):
        self.workers = workers

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(),))

    def run(self, paths: Sequence[str], options: BenchOptions, on_start: OnStart,
            on_done: OnDone) -> None:
        queue = list(reversed(paths))
        deaths: dict[str, int] = {}
        while queue:
            pool = self._pool()
            pending: dict[Future, str] = {}
            try:
                while queue or pending:
                    while queue and len(pending) < self.workers:
                        path = queue.pop()
                        on_start(path)
                        pending[pool.submit(run_instance, path, options)] = path
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        rec = fut.result()  # BrokenProcessPool if its worker died
                        del pending[fut]
                        on_done(rec)
            except BrokenProcessPool:
                # A worker died (out of memory, killed): every instance in flight gets a strike
                # and goes back in the queue; one that keeps killing workers is an ERROR.
                for fut, path in pending.items():
                    if fut.done() and not fut.exception():
                        on_done(fut.result())
                        continue
                    deaths[path] = deaths.get(path, 0) + 1
                    if deaths[path] >= MAX_WORKER_DEATHS:
                        on_done(error_record(path, file_sha256(Path(path)), options,
                                             "internal error: the worker process solving it "
                                             f"died {deaths[path]} times"))
                    else:
                        queue.append(path)
            except BaseException:
                _terminate(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's processes now (Ctrl-C): shutdown() alone would wait for running solves."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass


# ----------------------------------------------------------------------------------------------
# Ray tasks
# ----------------------------------------------------------------------------------------------

RAY_MISSING = ("--executor ray: Ray is not installed (pip install ray, or pip install "
               "'moeplan[ray]')")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING, "executor") from None
    return ray


def ray_runtime_env(working_dir: str) -> dict[str, Any]:
    """The job's runtime environment: workers start in ``working_dir``, an empty directory.

    Without a ``working_dir``, Ray puts the driver's current directory (and its script's) at the
    front of every worker's ``sys.path``, so a ``moeplan/`` or ``solver/`` folder there (another
    checkout, say) shadows the installed package and every task fails to import. With one, Ray
    adds neither: workers import moeplan from their own environment, like any installed
    package. ``py_modules`` or ``PYTHONPATH`` would not help: both come after those entries.
    """
    return {"working_dir": working_dir}


def task_error(exc: BaseException) -> str:
    """One line for a Ray task that failed: what the task raised (``RayTaskError.cause``), not
    Ray's report of it (a header with colour codes and the remote traceback); for Ray's own
    errors (a worker that died, an unschedulable task) the first line of its message."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line for line in (one_line(x) for x in str(exc).splitlines()) if line]
    return f"internal error: Ray task failed: {type(exc).__name__}: {lines[0] if lines else ''}"


class RayExecutor:
    """The same work as Ray tasks: on the cluster at ``address``, or on a local Ray instance
    started with ``num_cpus = workers`` (and shut down afterwards). At most ``workers`` tasks are
    in flight. Ray is started with :func:`ray_runtime_env`; on a remote cluster every node needs
    moeplan installed (same version). A Ray already initialized by the caller is used as it is
    (with its own runtime environment) and left running."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        self.workers = workers
        self.address = address
        self.ray = import_ray()

    def _init(self, working_dir: str) -> bool:
        """Connect or start; returns True if we started Ray here (and must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                                  "logging_level": "ERROR",
                                  "runtime_env": ray_runtime_env(working_dir)}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = self.address or "a local instance"
            raise InputError(f"--ray-address: cannot start or reach Ray at {where} "
                             f"({one_line(exc)})", "ray_address") from None
        return True

    def run(self, paths: Sequence[str], options: BenchOptions, on_start: OnStart,
            on_done: OnDone) -> None:
        ray = self.ray
        # Ray uploads the working directory when it starts the job; it stays empty.
        with tempfile.TemporaryDirectory(prefix="moeplan-ray-") as working_dir:
            started = self._init(working_dir)
            try:
                self._run(paths, options, on_start, on_done)
            finally:
                if started:
                    ray.shutdown()

    def _run(self, paths: Sequence[str], options: BenchOptions, on_start: OnStart,
             on_done: OnDone) -> None:
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=1)(run_instance)
        # Tasks get absolute paths (workers run in another working directory); the record
        # keeps the path as the run displays it.
        queue = list(reversed(paths))
        pending: dict[Any, str] = {}
        while queue or pending:
            while queue and len(pending) < self.workers:
                path = queue.pop()
                on_start(path)
                pending[task.remote(str(Path(path).resolve()), options)] = path
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                path = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                    rec["path"] = path
                except Exception as exc:  # the task or its worker failed
                    rec = error_record(path, file_sha256(Path(path)), options, task_error(exc))
                on_done(rec)
