"""Solver worker processes: CP-SAT solves off the event loop, bounded, and stoppable.

Each worker is a ``spawn``-ed process that imports the planner once and then solves one job at a
time. The parent talks to it over a :func:`multiprocessing.Pipe` (jobs in; improving plans, the
final result or an error out) and stops it through a :class:`multiprocessing.Event` that the
planner polls via ``should_stop``. A worker that has not stopped within ``stop_grace_s`` of being
asked is killed and replaced; a warm spare process takes its place at once so the next call does
not wait for a process to start.

Concurrency is bounded: ``size`` solves run at once, up to ``queue_limit`` more wait for a worker,
and beyond that :class:`PoolFull` is raised (the servicer answers RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from solver.schema import Instance, SolveResult

log = logging.getLogger("moeplan.service.workers")

#: How long a worker may take to start (spawn + import OR-Tools) before the pool gives up.
START_TIMEOUT_S = 60.0


class PoolFull(Exception):
    """Every worker is busy and the queue is full."""


class PoolClosed(Exception):
    """The pool is shutting down."""


class WorkerCrashed(Exception):
    """A worker process died during a job (killed by the OS, out of memory, a native crash)."""


class DeadlineTooShort(Exception):
    """When a worker became free, the job's hard deadline left less time than its own time
    limit: no solve is started (the servicer answers DEADLINE_EXCEEDED)."""


class WorkerError(Exception):
    """The job raised in the worker; ``details`` holds the worker-side traceback."""

    def __init__(self, message: str, details: str):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class SolveJob:
    """One solve, as sent to a worker."""

    instance: Instance
    time_limit_s: float
    workers: int | None = None


# ----------------------------------------------------------------------------------------------
# The worker process
# ----------------------------------------------------------------------------------------------


def _worker_main(conn: Connection, stop: Any) -> None:
    """Entry point of a worker process: solve jobs until the pipe closes or ``None`` arrives."""
    # The parent handles Ctrl-C and SIGTERM (graceful shutdown) and then closes our pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from solver import planner  # the slow import, once per process

    send_lock = threading.Lock()  # improvements arrive on CP-SAT's callback thread

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result = planner.solve(
                job.instance,
                time_limit_s=job.time_limit_s,
                workers=job.workers,
                on_improvement=lambda r: send(("improvement", r)),
                should_stop=stop.is_set,
            )
            send(("done", result))
        except planner.Cancelled:
            send(("cancelled", None))
        except Exception as exc:  # reported to the parent, which logs it and answers INTERNAL
            send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


# ----------------------------------------------------------------------------------------------
# The parent's handle on one worker
# ----------------------------------------------------------------------------------------------


class _Worker:
    """A started worker process, its pipe and stop flag, and a thread that forwards what it
    sends to the event loop."""

    def __init__(self, ctx: Any, loop: asyncio.AbstractEventLoop, index: int,
                 target: Callable[[Connection, Any], None]):
        self.loop = loop
        self.stop = ctx.Event()
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=target, args=(child_conn, self.stop),
                                   name=f"moeplan-solver-{index}", daemon=True)
        self.process.start()
        child_conn.close()
        self.ready: asyncio.Future[int] = loop.create_future()
        self.inbox: asyncio.Queue[tuple] | None = None  # the current job's messages
        self.alive = True
        self._reader = threading.Thread(target=self._read, name=f"moeplan-reader-{index}",
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = ("exit", None)
                with contextlib.suppress(OSError):
                    self.conn.close()
            except Exception as exc:  # an unpicklable message: report it as a job error
                message = ("error", f"unreadable worker message: {exc}", traceback.format_exc())
            try:
                self.loop.call_soon_threadsafe(self._deliver, message)
            except RuntimeError:  # the loop is closed
                return
            if message[0] == "exit":
                return

    def _deliver(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            if not self.ready.done():
                self.ready.set_result(message[1])
            return
        if kind == "exit":
            self.alive = False
            if not self.ready.done():
                self.ready.set_exception(WorkerCrashed("the worker exited while starting"))
        if self.inbox is not None:
            self.inbox.put_nowait(message)

    def start_job(self, job: SolveJob) -> asyncio.Queue[tuple]:
        self.stop.clear()
        self.inbox = asyncio.Queue()
        self.conn.send(job)
        return self.inbox

    def kill(self) -> None:
        """Terminate now (workers ignore SIGTERM, so this is SIGKILL). The reader thread sees
        the pipe close and closes our end (closing it here could race with its blocked read)."""
        self.alive = False
        with contextlib.suppress(Exception):
            self.process.kill()

    def close(self) -> None:
        """Ask an idle worker to exit."""
        with contextlib.suppress(Exception):
            self.conn.send(None)

    def join(self, timeout: float) -> None:
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
            self.process.join(1.0)


# ----------------------------------------------------------------------------------------------
# The pool
# ----------------------------------------------------------------------------------------------


class WorkerPool:
    """``size`` solver processes (plus ``spares`` warm ones), ``queue_limit`` waiting calls."""

    def __init__(self, size: int, queue_limit: int, *, spares: int = 1,
                 stop_grace_s: float = 0.3, start_method: str = "spawn",
                 target: Callable[[Connection, Any], None] = _worker_main):
        if size < 1 or queue_limit < 0 or spares < 0:
            raise ValueError("size must be >= 1, queue_limit and spares >= 0")
        self.size = size
        self.queue_limit = queue_limit
        self.spares = spares
        self.stop_grace_s = stop_grace_s
        self._target = target  # the worker's main function (tests substitute a fake one)
        self._ctx = multiprocessing.get_context(start_method)
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._slots = asyncio.Semaphore(size)
        self._waiting = 0
        self._busy = 0
        self._spawned = 0
        self._closed = False
        self._background: set[asyncio.Task] = set()
        self.jobs_started = 0  # jobs handed to a worker
        self.replaced = 0  # workers killed and replaced

    # -- lifecycle --

    async def start(self) -> None:
        """Start every process and wait until each has imported the planner."""
        workers = [self._spawn() for _ in range(self.size + self.spares)]
        await asyncio.wait_for(asyncio.gather(*(w.ready for w in workers)), START_TIMEOUT_S)
        for worker in workers:
            self._idle.put_nowait(worker)

    def _spawn(self) -> _Worker:
        self._spawned += 1
        worker = _Worker(self._ctx, asyncio.get_running_loop(), self._spawned, self._target)
        self._all.add(worker)
        return worker

    async def _replace(self) -> None:
        """Start a new process and add it to the idle workers once it is ready."""
        worker = self._spawn()
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT_S)
        except Exception:
            log.exception("a replacement solver worker failed to start")
            worker.kill()
            self._all.discard(worker)
            return
        self._give_back(worker)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop every worker: idle ones exit, busy ones are killed."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        for worker in list(self._all):
            worker.stop.set()
            worker.close()
        deadline = time.monotonic() + timeout_s
        for worker in list(self._all):
            await asyncio.to_thread(worker.join, max(0.0, deadline - time.monotonic()))
        self._all.clear()

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- state --

    @property
    def busy(self) -> int:
        """Calls holding a worker."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Calls waiting for a worker."""
        return self._waiting

    @property
    def idle(self) -> int:
        """Started workers waiting for a job (spares included)."""
        return self._idle.qsize()

    def worker_pids(self) -> list[int]:
        return sorted(w.pid for w in self._all if w.alive and w.pid is not None)

    # -- running a solve --

    async def _acquire_slot(self) -> None:
        if self._closed:
            raise PoolClosed("the server is shutting down")
        if self._slots.locked():
            if self._waiting >= self.queue_limit:
                raise PoolFull(f"all {self.size} solver workers are busy and "
                               f"{self._waiting} calls are queued (limit {self.queue_limit})")
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._busy += 1

    def _release_slot(self) -> None:
        self._busy -= 1
        self._slots.release()

    async def _take_worker(self) -> _Worker:
        while True:
            worker = await self._idle.get()
            if worker.alive and worker.process.is_alive():
                return worker
            self._all.discard(worker)  # died while idle: replace it
            self._in_background(self._replace())

    def _give_back(self, worker: _Worker) -> None:
        worker.inbox = None
        if self._closed:
            worker.close()
        else:
            self._idle.put_nowait(worker)

    async def _stop_and_release(self, worker: _Worker, inbox: asyncio.Queue[tuple]) -> None:
        """Stop the worker's job; if it has not stopped within the grace, kill it and let a warm
        spare take its place. Releases the call's slot when done."""
        try:
            worker.stop.set()
            deadline = time.monotonic() + self.stop_grace_s
            while worker.alive:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    message = await asyncio.wait_for(inbox.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if message[0] in ("done", "cancelled", "error"):
                    self._give_back(worker)
                    return
                if message[0] == "exit":
                    break
            if worker.alive:
                log.warning("solver worker pid %s did not stop within %.1f s: killed and "
                            "replaced", worker.pid, self.stop_grace_s)
            worker.kill()
            self._all.discard(worker)
            self.replaced += 1
            self._in_background(asyncio.to_thread(worker.join, 1.0))
            if not self._closed:
                self._in_background(self._replace())
        finally:
            self._release_slot()

    async def solve(
        self, job_for: Callable[[], tuple[SolveJob, float | None]]
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run one solve; yield ``("improvement", SolveResult)`` for each improving plan and end
        with ``("done", SolveResult)`` or ``("timeout", best SolveResult or None)``.

        ``job_for()`` builds the job and its hard deadline once a worker is free (so the time
        spent queueing is not charged to the solve). Hard deadline (``time.monotonic()``, or
        None): when the worker has not answered by then, the last improving plan is the answer
        and the worker is stopped in the background; a job whose hard deadline is nearer than
        its time limit is not started (:class:`DeadlineTooShort`). Raises :class:`PoolFull`,
        :class:`PoolClosed`, :class:`DeadlineTooShort`, :class:`WorkerError`,
        :class:`WorkerCrashed`. Cancelling the
        consumer (or closing the generator, e.g. with :func:`contextlib.aclosing`) stops the
        solve and frees the worker.
        """
        await self._acquire_slot()
        try:
            worker = await self._take_worker()
        except BaseException:
            self._release_slot()
            raise
        inbox: asyncio.Queue[tuple] | None = None
        clean = False  # the worker is idle again and can be given back as it is
        try:
            job, hard_deadline = job_for()
            left = None if hard_deadline is None else hard_deadline - time.monotonic()
            if left is not None and left < job.time_limit_s:
                raise DeadlineTooShort(
                    f"the deadline leaves {max(left, 0.0):.3f} s to answer when a solver worker "
                    f"is free, less than the solve's time limit of {job.time_limit_s:g} s; "
                    "give the call a longer deadline")
            inbox = worker.start_job(job)
            self.jobs_started += 1
            best: SolveResult | None = None
            while True:
                timeout = None if hard_deadline is None else hard_deadline - time.monotonic()
                try:
                    if timeout is not None and timeout <= 0:
                        raise asyncio.TimeoutError
                    message = await asyncio.wait_for(inbox.get(), timeout)
                except asyncio.TimeoutError:
                    yield ("timeout", best)
                    return
                kind = message[0]
                if kind == "improvement":
                    best = message[1]
                    yield ("improvement", best)
                elif kind == "done":
                    clean = True
                    yield ("done", message[1])
                    return
                elif kind == "error":
                    clean = True
                    raise WorkerError(message[1], message[2])
                elif kind == "cancelled":  # not asked for
                    clean = True
                    raise WorkerCrashed("the worker stopped its solve unasked")
                else:  # "exit": the pipe closed; reap the process for its exit code
                    await asyncio.to_thread(worker.process.join, 1.0)
                    raise WorkerCrashed(f"solver worker pid {worker.pid} exited (code "
                                        f"{worker.process.exitcode}) during the solve")
        finally:
            if inbox is None or (clean and worker.alive):
                self._give_back(worker)
                self._release_slot()
            else:
                # Cancelled, out of time or crashed: stop (or kill) it without holding up the
                # caller; its slot is released once the worker is free again.
                self._in_background(self._stop_and_release(worker, inbox))
