"""Batch solving: a directory of instances → one JSON line per instance, resumable, with baselines.

The engine behind ``moeplan bench`` (the command adds the progress bar and the terminal summary).

- :func:`discover` lists the instance files under the given paths (``*.yaml``, ``*.yml``,
  ``*.json``, recursively, sorted).
- :func:`run_instance` solves one file and returns its result record; it never raises. It runs in
  a worker (a spawned process, or a Ray task): it loads the instance, runs the planner, and, as
  baselines measured in the same run, the exhaustive reference search
  (:func:`solver.reference.reference_search`, within its own time limit and plan budget) and the
  greedy EPLB expert placement (the planner's :class:`~solver.schema.SolveResult` carries each MoE
  layer's greedy hottest-rank load next to its own). A file that does not load is a record with
  status ``ERROR`` and the one-line message.
- :class:`ResultsFile` is the JSON-lines output. The parent process appends each record as it
  completes with a single ``os.write`` of the whole line (newline included) on an ``O_APPEND``
  descriptor, then ``fsync``: a SIGKILL at any moment leaves complete lines plus at most one
  partial last line, which reading ignores and opening for append truncates. ``--resume`` skips
  every instance whose (path, sha256 of the file bytes) already has a line, so an edited file is
  solved again and a resumed run writes no duplicates.
- :class:`ProcessExecutor` (a ``ProcessPoolExecutor`` with the spawn context) and
  :class:`RayExecutor` (the same function as Ray tasks) run the work, at most ``workers`` at a
  time; results come back to the parent, which writes them.
- :func:`summarize`, :func:`report_markdown` and :func:`report_csv` turn records into the
  comparison: per instance and as medians, planner time / reference time, same GPU count or not,
  and hottest-rank load planner / greedy.

No gRPC and no plotting here (plots live in :mod:`solver.plots`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from solver.instance import InputError

#: Version of the record layout; bump when a field changes meaning.
RECORD_SCHEMA = "moeplan.bench/1"
INSTANCE_SUFFIXES = (".yaml", ".yml", ".json")
#: Planner statuses; a record adds ERROR (the instance could not be solved at all).
STATUSES = ("OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN", "ERROR")
#: Default budget of the reference search (plans examined) and its default time limit.
REFERENCE_MAX_PLANS = 200_000
REFERENCE_TIME_LIMIT_S = 10.0
#: An instance whose worker process died this many times is recorded as ERROR.
MAX_WORKER_DEATHS = 2


def one_line(text: object) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------
# Instance files
# ----------------------------------------------------------------------------------------------


def display_path(path: Path) -> str:
    """The path as records store it: relative to the working directory when under it (so a
    results file moves with its checkout), else absolute; always with forward slashes."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """Instance files under ``paths``: files as given, directories searched recursively for
    ``*.yaml``/``*.yml``/``*.json``; sorted, without duplicates. Raises :class:`InputError` for a
    path that does not exist or when nothing is found."""
    if not paths:
        raise InputError("PATH: give at least one instance file or directory", "paths")
    found: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in p.rglob("*"):
                if f.is_file() and f.suffix.lower() in INSTANCE_SUFFIXES:
                    found.setdefault(display_path(f), f)
        elif p.is_file():
            found.setdefault(display_path(p), p)
        else:
            raise InputError(f"PATH: {raw}: no such file or directory", "paths")
    if not found:
        raise InputError("PATH: no instance files (*.yaml, *.yml, *.json) under "
                         + ", ".join(str(p) for p in paths), "paths")
    return [found[k] for k in sorted(found)]


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------
# One instance (runs in a worker)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """What every worker needs to know; plain data so it pickles to processes and Ray tasks."""

    time_limit_s: float | None = None  # None: the instance's search.time_limit_s
    solver_workers: int = 2  # CP-SAT workers per solve (the planner's default)
    reference: bool = True
    reference_time_limit_s: float = REFERENCE_TIME_LIMIT_S
    reference_max_plans: int = REFERENCE_MAX_PLANS
    executor: str = "process"


def versions() -> dict[str, str]:
    from ortools import __version__ as ortools_version

    from moeplan import __version__ as moeplan_version

    return {"moeplan": moeplan_version, "ortools": ortools_version,
            "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(path: str, sha256: str | None, options: BenchOptions) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "path": path,
        "sha256": sha256,
        "name": None,
        "status": "ERROR",
        "error": None,
        "gpus": None,
        "bound": None,
        "gap": None,
        "wall_time_s": None,
        "solve_time_s": None,
        "metrics": None,
        "plan": None,
        "explanation": None,
        "placement": None,
        "reference": None,
        "same_gpus": None,
        "time_ratio": None,
        "versions": versions(),
        "settings": asdict(options),
        "host": socket.gethostname(),
        "finished_at": None,
    }


def error_record(path: str, sha256: str | None, options: BenchOptions, message: str
                 ) -> dict[str, Any]:
    rec = base_record(path, sha256, options)
    rec["error"] = one_line(message)
    rec["finished_at"] = _now()
    return rec


def placement_summary(experts: Iterable[Any], ep: int) -> dict[str, Any] | None:
    """Hottest-rank load of the planner's placement against DeepSeek EPLB's greedy one, over
    the MoE layers (shares of a layer's routed tokens; lower is better)."""
    layers = list(experts)
    if not layers:
        return None
    ratios = [e.hottest_load / e.greedy_hottest_load for e in layers if e.greedy_hottest_load > 0]
    hottest = max(e.hottest_load for e in layers)
    greedy = max(e.greedy_hottest_load for e in layers)
    return {
        "ep": ep,
        "moe_layers": len(layers),
        "hottest_load_max": hottest,
        "greedy_hottest_load_max": greedy,
        "lower_bound_max": max(e.lower_bound for e in layers),
        # The busiest rank of the busiest layer sets the MoE time: compare those.
        "hottest_vs_greedy": hottest / greedy if greedy > 0 else None,
        "hottest_vs_greedy_mean": statistics.fmean(ratios) if ratios else None,
        "layers_at_lower_bound": sum(1 for e in layers if e.optimal),
        "replicated_experts_max": max(e.replicated_experts for e in layers),
    }


def same_gpus(status: str, gpus: int | None, ref: dict[str, Any] | None) -> bool | None:
    """Whether planner and reference agree on the fewest GPUs (both infeasible counts as the
    same answer); None when the reference did not finish or was not run."""
    if ref is None or ref.get("status") not in ("OPTIMAL", "INFEASIBLE"):
        return None
    if status == "ERROR":
        return None
    if ref["status"] == "INFEASIBLE":
        return status == "INFEASIBLE"
    return gpus is not None and gpus == ref.get("gpus")


def run_instance(path: str, options: BenchOptions) -> dict[str, Any]:
    """Solve one instance file and measure the baselines; returns the record, never raises."""
    p = Path(path)
    try:
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        return error_record(path, None, options, f"{path}: cannot read ({exc.strerror})")
    try:
        return _run_instance(path, sha, options)
    except InputError as exc:
        return error_record(path, sha, options, str(exc))
    except Exception as exc:  # a bug: recorded, the run goes on
        return error_record(path, sha, options, f"internal error: {type(exc).__name__}: {exc}")


def _run_instance(path: str, sha: str, options: BenchOptions) -> dict[str, Any]:
    from solver.instance import load_instance
    from solver.planner import solve

    try:
        instance = load_instance(path)
    except InputError:
        raise
    except ValueError as exc:  # any other resolution error, as one line
        raise InputError(one_line(exc)) from None
    rec = base_record(path, sha, options)
    rec["name"] = instance.name
    start = time.perf_counter()
    result = solve(instance, time_limit_s=options.time_limit_s, workers=options.solver_workers)
    rec["wall_time_s"] = time.perf_counter() - start
    rec.update(
        status=result.status,
        gpus=result.objective,
        bound=result.bound,
        gap=result.gap,
        solve_time_s=result.solve_time_s,
        metrics=result.metrics.model_dump(mode="json") if result.metrics else None,
        explanation=result.explanation.summary if result.explanation else None,
    )
    if result.plan is not None:
        plan = result.plan
        rec["plan"] = {
            "degrees": plan.degrees.model_dump(mode="json"),
            "batch": plan.batch,
            "stages": [[s.first_layer, s.last_layer] for s in plan.stages or ()],
        }
        rec["placement"] = placement_summary(result.experts, plan.degrees.ep)
    if options.reference:
        rec["reference"] = _reference(instance, options)
        rec["same_gpus"] = same_gpus(result.status, result.objective, rec["reference"])
        ref_time = rec["reference"].get("time_s")
        if rec["reference"]["status"] in ("OPTIMAL", "INFEASIBLE") and ref_time:
            rec["time_ratio"] = rec["wall_time_s"] / ref_time
    rec["finished_at"] = _now()
    return rec


def _reference(instance: Any, options: BenchOptions) -> dict[str, Any]:
    from solver.reference import reference_search

    start = time.perf_counter()
    out: dict[str, Any] = {"time_limit_s": options.reference_time_limit_s,
                           "max_plans": options.reference_max_plans}
    try:
        ref = reference_search(instance, max_plans=options.reference_max_plans,
                               time_limit_s=options.reference_time_limit_s)
    except Exception as exc:  # a disagreement inside the reference is a finding, not a crash
        out.update(status="ERROR", gpus=None, time_s=time.perf_counter() - start,
                   plans_checked=None, error=one_line(f"{type(exc).__name__}: {exc}"))
        return out
    out.update(status=ref.status, gpus=ref.gpus, time_s=ref.time_s,
               plans_checked=ref.plans_checked)
    return out


# ----------------------------------------------------------------------------------------------
# The results file
# ----------------------------------------------------------------------------------------------


def encode_record(record: dict[str, Any]) -> bytes:
    """One line of JSON (no NaN/inf, which JSON lacks) plus the newline, as bytes."""
    return (json.dumps(_finite(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class ReadResult:
    records: list[dict[str, Any]]
    partial_tail: bool = False  # the file ended in a torn (unterminated) line
    bad_lines: list[int] = field(default_factory=list)  # complete lines that did not parse


def read_records(path: Path) -> ReadResult:
    """Every complete, parseable record line. A last line without its newline is a torn write
    and is ignored; a complete line that is not a JSON object is skipped and reported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReadResult([])
    except OSError as exc:
        raise InputError(f"--out: cannot read {path} ({exc.strerror})", "out") from None
    out = ReadResult([])
    body, sep, tail = data.rpartition(b"\n")
    if not sep:  # no newline at all: everything is a torn line
        body, tail = b"", data
    out.partial_tail = bool(tail)
    for number, line in enumerate(body.split(b"\n") if body else [], start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            out.bad_lines.append(number)
            continue
        if isinstance(rec, dict) and isinstance(rec.get("path"), str):
            out.records.append(rec)
        else:
            out.bad_lines.append(number)
    return out


class ResultsFile:
    """An append-only JSON-lines file written by one process.

    Opening truncates a torn last line (what a kill during a write can leave), so the next line
    starts clean. :meth:`append` writes a record with one ``os.write`` of the whole line on an
    ``O_APPEND`` descriptor and ``fsync``s it before returning.
    """

    def __init__(self, path: Path, *, truncate: bool = False):
        self.path = path
        if path.is_dir():
            raise InputError(f"--out: {path} is a directory, expected a file name", "out")
        if not path.parent.is_dir():
            raise InputError(f"--out: directory {path.parent} does not exist", "out")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise InputError(f"--out: cannot open {path} ({exc.strerror})", "out") from None
        self.repaired = self._drop_torn_tail()

    def _drop_torn_tail(self) -> int:
        """Truncate after the last newline; returns the bytes dropped."""
        size = os.fstat(self.fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            chunk = 1 << 16
            pos = size
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                block = f.read(pos - start)
                i = block.rfind(b"\n")
                if i >= 0:
                    keep = start + i + 1
                    break
                pos = start
            else:
                keep = 0
        if keep < size:
            os.ftruncate(self.fd, keep)
            os.fsync(self.fd)
        return size - keep

    def append(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        written = os.write(self.fd, data)
        while written < len(data):  # only on exotic filesystems; still one line, in order
            written += os.write(self.fd, data[written:])
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------

OnStart = Callable[[str], None]
OnDone = Callable[[dict[str, Any]], None]


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


RAY_MISSING = ("--executor ray: Ray is not installed (pip install ray, or pip install "
               "'moeplan[ray]')")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING, "executor") from None
    return ray


class RayExecutor:
    """The same work as Ray tasks: on the cluster at ``address``, or on a local Ray instance
    started with ``num_cpus = workers`` (and shut down afterwards). At most ``workers`` tasks are
    in flight. On a remote cluster every node needs moeplan installed (same version)."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        self.workers = workers
        self.address = address
        self.ray = import_ray()

    def _init(self) -> bool:
        """Connect or start; returns True if we started Ray here (and must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                                  "logging_level": "ERROR"}
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
        started = self._init()
        try:
            task = ray.remote(num_cpus=1, max_retries=1)(run_instance)
            # Tasks get absolute paths (a worker may run in another working directory); the
            # record keeps the path as the run displays it.
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
                        rec = error_record(path, file_sha256(Path(path)), options,
                                           f"internal error: Ray task failed: "
                                           f"{type(exc).__name__}: {exc}")
                    on_done(rec)
        finally:
            if started:
                ray.shutdown()


# ----------------------------------------------------------------------------------------------
# A run
# ----------------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """What a run will do (before it starts)."""

    files: list[Path]
    todo: list[str]
    skipped: int
    read: ReadResult


def latest_for(files: Sequence[Path], records: Sequence[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """For each file, its latest record with the file's current hash (else its latest record
    at all), in file order; files without a record are left out."""
    by_key: dict[tuple[str, str | None], dict[str, Any]] = {}
    by_path: dict[str, dict[str, Any]] = {}
    for rec in records:
        by_key[(rec["path"], rec.get("sha256"))] = rec
        by_path[rec["path"]] = rec
    out = []
    for f in files:
        path = display_path(f)
        rec = by_key.get((path, file_sha256(f))) or by_path.get(path)
        if rec is not None:
            out.append(rec)
    return out


def prepare(paths: Sequence[str | Path], out: Path, *, resume: bool) -> RunPlan:
    """Discover the files and decide which to solve: all of them, or with ``resume`` those
    without a record of the same path and content hash."""
    files = discover(paths)
    read = read_records(out) if resume else ReadResult([])
    done = {(r["path"], r.get("sha256")) for r in read.records}
    todo = []
    for f in files:
        path = display_path(f)
        if (path, file_sha256(f)) not in done:
            todo.append(path)
    return RunPlan(files, todo, len(files) - len(todo), read)


def make_executor(kind: str, workers: int, ray_address: str | None) -> Any:
    if kind == "process":
        if ray_address:
            raise InputError("--ray-address: only used with --executor ray", "ray_address")
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, ray_address)
    raise InputError(f"--executor: unknown executor '{kind}' (use process or ray)", "executor")


def run_bench(
    paths: Sequence[str | Path],
    out: Path,
    *,
    options: BenchOptions,
    workers: int,
    executor: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    on_plan: Callable[[RunPlan], None] | None = None,
    on_start: OnStart | None = None,
    on_done: OnDone | None = None,
) -> list[dict[str, Any]]:
    """Solve every instance under ``paths`` into ``out``; returns the records of these files
    (this run's and, with ``resume``, earlier ones), in file order."""
    if out.exists() and out.is_file() and out.stat().st_size > 0 and not (resume or overwrite):
        raise InputError(f"--out: {out} already holds results; add --resume to continue it or "
                         "--overwrite to start again", "out")
    plan = prepare(paths, out, resume=resume)
    executor = executor or ProcessExecutor(workers)
    with ResultsFile(out, truncate=overwrite and not resume) as results:
        if on_plan is not None:
            on_plan(plan)

        def done(rec: dict[str, Any]) -> None:
            results.append(rec)
            if on_done is not None:
                on_done(rec)

        if plan.todo:
            executor.run(plan.todo, options, on_start or (lambda _p: None), done)
    return latest_for(plan.files, read_records(out).records)


# ----------------------------------------------------------------------------------------------
# Summaries and reports
# ----------------------------------------------------------------------------------------------


def _median(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def reference_finished(rec: dict[str, Any]) -> bool:
    ref = rec.get("reference")
    return bool(ref) and ref.get("status") in ("OPTIMAL", "INFEASIBLE")


def planner_solved(rec: dict[str, Any]) -> bool:
    """Proved: an optimal plan or a proof that none exists."""
    return rec.get("status") in ("OPTIMAL", "INFEASIBLE")


def hot_ratio(rec: dict[str, Any]) -> float | None:
    """Hottest-rank load planner / greedy of the busiest layer; only meaningful with ep > 1."""
    pl = rec.get("placement")
    if not pl or pl.get("ep", 1) <= 1:
        return None
    return pl.get("hottest_vs_greedy")


@dataclass
class Summary:
    instances: int
    by_status: dict[str, int]
    planner_solved: int
    reference_run: int
    reference_finished: int
    compared: int  # instances where the reference finished (same_gpus is not None)
    same: int
    different: list[str]
    median_planner_s: float | None
    median_reference_s: float | None  # over instances where the reference finished
    median_time_ratio: float | None
    median_hot_ratio: float | None  # over plans with ep > 1
    hot_compared: int
    hot_better: int  # planner's hottest rank strictly below greedy's
    versions: dict[str, str]
    settings: dict[str, Any]
    slowest: tuple[float, str] | None = None  # (planner wall time, path)
    host: str | None = None
    finished: str | None = None  # the latest finished_at


def summarize(records: Sequence[dict[str, Any]]) -> Summary:
    by_status = dict.fromkeys(STATUSES, 0)
    for r in records:
        by_status[r.get("status", "ERROR")] = by_status.get(r.get("status", "ERROR"), 0) + 1
    compared = [r for r in records if r.get("same_gpus") is not None]
    hots = [h for h in (hot_ratio(r) for r in records) if h is not None]
    last = records[-1] if records else {}
    return Summary(
        instances=len(records),
        by_status=by_status,
        planner_solved=sum(1 for r in records if planner_solved(r)),
        reference_run=sum(1 for r in records if r.get("reference")),
        reference_finished=sum(1 for r in records if reference_finished(r)),
        compared=len(compared),
        same=sum(1 for r in compared if r["same_gpus"]),
        different=[r["path"] for r in compared if not r["same_gpus"]],
        median_planner_s=_median(r.get("wall_time_s") for r in records),
        median_reference_s=_median(r["reference"].get("time_s") for r in records
                                   if reference_finished(r)),
        median_time_ratio=_median(r.get("time_ratio") for r in records),
        median_hot_ratio=_median(hots),
        hot_compared=len(hots),
        hot_better=sum(1 for h in hots if h < 1 - 1e-9),
        versions=last.get("versions") or {},
        settings=last.get("settings") or {},
        slowest=max(((r["wall_time_s"], r["path"]) for r in records
                     if r.get("wall_time_s") is not None), default=None),
        host=last.get("host"),
        finished=max((r["finished_at"] for r in records if r.get("finished_at")), default=None),
    )


def fmt_s(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def fmt_ratio(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def fmt_bool(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "NO")


#: Columns of the per-instance table (markdown, terminal) and the CSV, in order.
ROW_FIELDS = (
    "instance", "status", "gpus", "bound", "planner_s", "reference", "reference_gpus",
    "reference_s", "time_ratio", "same_gpus", "ep", "hottest_load", "greedy_hottest_load",
    "hot_ratio",
)


def row(rec: dict[str, Any]) -> dict[str, Any]:
    """The per-instance comparison as plain values (the CSV row)."""
    ref = rec.get("reference") or {}
    pl = rec.get("placement") or {}
    return {
        "instance": rec["path"],
        "status": rec.get("status"),
        "gpus": rec.get("gpus"),
        "bound": rec.get("bound"),
        "planner_s": rec.get("wall_time_s"),
        "reference": ref.get("status"),
        "reference_gpus": ref.get("gpus"),
        "reference_s": ref.get("time_s"),
        "time_ratio": rec.get("time_ratio"),
        "same_gpus": rec.get("same_gpus"),
        "ep": pl.get("ep"),
        "hottest_load": pl.get("hottest_load_max"),
        "greedy_hottest_load": pl.get("greedy_hottest_load_max"),
        "hot_ratio": pl.get("hottest_vs_greedy"),
    }


def display_row(rec: dict[str, Any]) -> list[str]:
    """The per-instance comparison as text cells (markdown and the terminal table)."""
    r = row(rec)
    ref_status = r["reference"] or "–"
    if ref_status == "TIMEOUT":
        ref_status = "timeout"
    status = r["status"] or "ERROR"
    if status == "ERROR" and rec.get("error"):
        status = "ERROR: " + rec["error"]
    return [
        r["instance"],
        status,
        "–" if r["gpus"] is None else str(r["gpus"]),
        "–" if r["bound"] is None else str(r["bound"]),
        fmt_s(r["planner_s"]),
        ref_status,
        "–" if r["reference_gpus"] is None else str(r["reference_gpus"]),
        fmt_s(r["reference_s"]),
        fmt_ratio(r["time_ratio"]),
        fmt_bool(r["same_gpus"]),
        "–" if r["ep"] is None else str(r["ep"]),
        "–" if r["hottest_load"] is None else f"{r['hottest_load']:.4f}",
        "–" if r["greedy_hottest_load"] is None else f"{r['greedy_hottest_load']:.4f}",
        "–" if r["hot_ratio"] is None else f"{r['hot_ratio']:.4f}",
    ]


DISPLAY_HEADERS = (
    "instance", "planner", "GPUs", "bound", "planner time", "reference", "ref GPUs",
    "ref time", "planner/ref time", "same GPUs", "EP", "hottest (planner)", "hottest (greedy)",
    "planner/greedy",
)


def summary_lines(s: Summary) -> list[tuple[str, str]]:
    """The medians and counts, as (label, value) pairs (markdown and the terminal)."""
    counts = ", ".join(f"{k} {v}" for k, v in s.by_status.items() if v)
    out = [
        ("instances", f"{s.instances} ({counts})"),
        ("planner proved (optimal or infeasible)", f"{s.planner_solved} of {s.instances}"),
        ("median planner time", fmt_s(s.median_planner_s)),
    ]
    if s.slowest is not None:
        out.append(("slowest planner solve", f"{fmt_s(s.slowest[0])} ({s.slowest[1]})"))
    if s.reference_run:
        out += [
            ("reference finished within its limit",
             f"{s.reference_finished} of {s.reference_run}"),
            ("median reference time (where it finished)", fmt_s(s.median_reference_s)),
            ("median planner time / reference time (where it finished)",
             fmt_ratio(s.median_time_ratio)),
            ("same GPU count as the reference (where it finished)",
             f"{s.same} of {s.compared}"
             + (f" (differs: {', '.join(s.different)})" if s.different else "")),
        ]
    out.append((
        "median hottest-rank load planner / greedy EPLB (plans with EP > 1)",
        f"{'–' if s.median_hot_ratio is None else f'{s.median_hot_ratio:.4f}'} over "
        f"{s.hot_compared} instances; planner strictly "
        f"better on {s.hot_better}"))
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(records: Sequence[dict[str, Any]], *, title: str = "Bench results",
                    level: int = 2) -> str:
    s = summarize(records)
    h = "#" * level
    v, st = s.versions, s.settings
    lines = [f"{h} {title}", ""]
    if v:
        ref = (f"reference search: time limit {st.get('reference_time_limit_s'):g} s, at most "
               f"{st.get('reference_max_plans')} plans" if st.get("reference")
               else "reference search: not run")
        limit = st.get("time_limit_s")
        limit_text = "each instance's own" if limit is None else f"{limit:g} s"
        lines += [
            f"moeplan {v.get('moeplan')}, OR-Tools {v.get('ortools')}, Python "
            f"{v.get('python')}; planner time limit "
            f"{limit_text}, "
            f"{st.get('solver_workers')} CP-SAT worker(s) per solve, executor "
            f"{st.get('executor')}; {ref}; run on {s.host or '?'}, finished {s.finished or '?'}. "
            "Times are wall times inside the worker. \"Solved\" means proved optimal or proved "
            "infeasible; a reference \"timeout\" hit its time limit or its plan budget.", ""]
    lines += ["| summary | value |", "|---|---|"]
    lines += [f"| {_md_cell(k)} | {_md_cell(val)} |" for k, val in summary_lines(s)]
    lines += ["", "| " + " | ".join(DISPLAY_HEADERS) + " |",
              "|" + "|".join("---" for _ in DISPLAY_HEADERS) + "|"]
    for rec in records:
        lines.append("| " + " | ".join(_md_cell(c) for c in display_row(rec)) + " |")
    lines.append("")
    return "\n".join(lines)


#: Markers of the generated bench section in a hand-written markdown file (docs/benchmarks.md):
#: ``--report md --report-out FILE`` replaces only the text between them when FILE has them.
BENCH_BEGIN = "<!-- BEGIN GENERATED: moeplan bench -->"
BENCH_END = "<!-- END GENERATED: moeplan bench -->"


def splice(document: str, begin: str, end: str, body: str) -> str | None:
    """``document`` with the text between the ``begin`` and ``end`` marker lines replaced by
    ``body`` (markers kept); None when the markers are not both there, in order."""
    i = document.find(begin)
    j = document.find(end, i + len(begin)) if i >= 0 else -1
    if i < 0 or j < 0:
        return None
    return document[: i + len(begin)] + "\n" + body.strip("\n") + "\n" + document[j:]


def write_markdown_report(records: Sequence[dict[str, Any]], path: Path,
                          cactus: Path | None = None) -> bool:
    """Write the markdown report to ``path``; if ``path`` already holds the bench markers, only
    the section between them is replaced (the rest of the document is kept). Returns True when
    it spliced. ``cactus`` (a PNG) is linked from the report, relative to ``path``."""
    text = report_markdown(records)
    if cactus is not None:
        rel = Path(os.path.relpath(cactus.resolve(), path.resolve().parent)).as_posix()
        head, sep, rest = text.partition("\n| summary | value |")
        text = (head.rstrip("\n") + "\n\n"
                + f"![Instances solved against time: planner and reference]({rel})\n\n"
                + sep.lstrip("\n") + rest)
    if path.is_file():
        spliced = splice(path.read_text(encoding="utf-8"), BENCH_BEGIN, BENCH_END, text)
        if spliced is not None:
            path.write_text(spliced, encoding="utf-8")
            return True
    path.write_text(text, encoding="utf-8")
    return False


def report_csv(records: Sequence[dict[str, Any]]) -> str:
    """One row per instance (ROW_FIELDS), then a row ``instance = MEDIAN`` with the medians."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    rows = [row(r) for r in records]
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    s = summarize(records)
    writer.writerow({
        "instance": "MEDIAN",
        "planner_s": s.median_planner_s if s.median_planner_s is not None else "",
        "reference_s": s.median_reference_s if s.median_reference_s is not None else "",
        "time_ratio": s.median_time_ratio if s.median_time_ratio is not None else "",
        "same_gpus": f"{s.same}/{s.compared}",
        "hot_ratio": s.median_hot_ratio if s.median_hot_ratio is not None else "",
    })
    return buf.getvalue()
