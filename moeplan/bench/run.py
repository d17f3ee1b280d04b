"""A run: discover the instance files, skip those already solved (``--resume``), solve the rest
with an executor into the results file, and return the records of these files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moeplan.bench.executors import Executor, OnDone, OnStart, ProcessExecutor
from moeplan.bench.records import BenchOptions, display_path, file_sha256
from moeplan.bench.store import ReadResult, ResultsFile, read_records
from solver.instance import InputError

INSTANCE_SUFFIXES = (".yaml", ".yml", ".json")


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


def run_bench(
    paths: Sequence[str | Path],
    out: Path,
    *,
    options: BenchOptions,
    workers: int,
    executor: Executor | None = None,
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
