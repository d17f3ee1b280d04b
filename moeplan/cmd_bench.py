"""``moeplan bench`` (batch solving with baselines) and ``moeplan plot`` (pictures of a plan).

Registered on the CLI by importing this module (``moeplan.cli`` does it). The engine is
:mod:`moeplan.bench`, the pictures :mod:`moeplan.plots`; matplotlib and Ray are imported lazily.
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from moeplan.cli import EXIT_NEGATIVE, command, load_instance_arg, plan_arg
from solver.instance import InputError
from solver.schema import MAX_TIME_LIMIT_S


class Executor(str, Enum):
    process = "process"
    ray = "ray"


class ReportFormat(str, Enum):
    md = "md"
    csv = "csv"


def _check_seconds(value: float | None, option: str, upper: float = MAX_TIME_LIMIT_S) -> None:
    if value is not None and not (math.isfinite(value) and 0 < value <= upper):
        raise InputError(f"{option}: must be in (0, {upper:g}] seconds, got {value}",
                         option.lstrip("-").replace("-", "_"))


PLOTS_MISSING = ("matplotlib is not installed; install the plots extra: "
                 "pip install 'moeplan[plots]'")
#: How long ``bench --executor ray --ray-address`` waits for the cluster's port to answer (Ray
#: itself retries for minutes on an address where nothing listens).
RAY_CONNECT_TIMEOUT_S = 5.0


def _require_matplotlib(field: str) -> None:
    """Fail before any solving when the pictures cannot be drawn."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise InputError(f"{field}: {PLOTS_MISSING}", field.lstrip("-")) from None


def _check_ray_address(address: str) -> None:
    """One TCP connection to the Ray cluster's address (``HOST:PORT`` of its GCS, or
    ``ray://HOST:PORT`` of its client server) before Ray is asked: where nothing listens,
    ``ray.init`` retries for minutes. ``auto`` (find a local cluster) is left to Ray."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray-address: expected HOST:PORT, ray://HOST:PORT or auto, got "
                         f"'{address}'", "ray_address")
    timeout_s = RAY_CONNECT_TIMEOUT_S
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except socket.gaierror as exc:
        why = f"unknown host: {exc.strerror}"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    else:
        return
    raise InputError(f"--ray-address: cannot reach Ray at {address} ({why}); is the cluster "
                     "running?", "ray_address")


def _status_style(status: str) -> str:
    return {"OPTIMAL": "green", "INFEASIBLE": "yellow", "FEASIBLE": "cyan",
            "UNKNOWN": "magenta", "ERROR": "red"}.get(status, "")


#: Terminal columns: a compact subset of the report's (which has every column).
TERMINAL_COLUMNS = (
    ("instance", 0), ("planner", 1), ("GPUs", 2), ("time", 4), ("reference", 5),
    ("ref GPUs", 6), ("ref time", 7), ("same", 9), ("hot/greedy", 13),
)


def _summary_table(records: list[dict[str, Any]]) -> Table:
    from moeplan.bench import display_row

    table = Table(title=f"moeplan bench: {len(records)} instances", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (h, _) in enumerate(TERMINAL_COLUMNS):
        if i == 0:
            table.add_column(h, overflow="ellipsis", no_wrap=True, ratio=1, min_width=12)
        else:
            table.add_column(h, justify="left" if i == 1 else "right", no_wrap=True)
    for rec in records:
        cells = display_row(rec)
        status = rec.get("status") or "ERROR"
        row = [Path(cells[0]).stem, status] + [cells[j] for _, j in TERMINAL_COLUMNS[2:]]
        table.add_row(escape(row[0]), f"[{_status_style(status)}]{status}[/]",
                      *(escape(c) for c in row[2:]))
    return table


def _errors(console: Console, records: list[dict[str, Any]]) -> None:
    for rec in records:
        if rec.get("status") == "ERROR":
            console.print(f"[red]ERROR[/] {escape(rec['path'])}: {escape(rec.get('error') or '')}",
                          soft_wrap=True)


def _medians_table(records: list[dict[str, Any]]) -> Table:
    from moeplan.bench import summarize, summary_lines

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summary_lines(summarize(records)):
        table.add_row(escape(label), escape(value))
    return table


@command("bench")
def bench_cmd(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH...", show_default=False,
        help="Instance files or directories (searched recursively for *.yaml, *.yml, *.json).")],
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE", help="JSON-lines results file (one line per instance).",
    )] = Path("bench-results.jsonl"),
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Instances solved at once (processes or Ray tasks). "
        "Default: CPUs / --solver-workers, at least 1.")] = None,
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", metavar="SECONDS",
        help="Planner time limit per instance (default: each instance's search.time_limit_s).",
    )] = None,
    solver_workers: Annotated[int, typer.Option(
        "--solver-workers", help="CP-SAT workers inside each solve.")] = 2,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Keep --out and skip instances it already holds (same path and "
        "content hash).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start --out afresh (it must otherwise be new or empty).")] = False,
    report: Annotated[ReportFormat | None, typer.Option(
        "--report", help="Also write a report: md or csv.")] = None,
    report_out: Annotated[Path | None, typer.Option(
        "--report-out", metavar="FILE",
        help="Where the report goes (default: --out with .md/.csv). A markdown file that holds "
        "the '<!-- BEGIN/END GENERATED: moeplan bench -->' markers keeps everything outside "
        "them.")] = None,
    plots: Annotated[Path | None, typer.Option(
        "--plots", metavar="DIR", help="Write a cactus plot of solve times (PNG) here.")] = None,
    executor: Annotated[Executor, typer.Option(
        "--executor", help="process: a local process pool; ray: Ray tasks (their workers "
        "import the installed moeplan, see docs/benchmarks.md).")] = Executor.process,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="ADDR",
        help="Ray cluster to use (default: start a local one with --workers CPUs).")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference/--no-reference",
        help="Also run the exhaustive reference search as a baseline.")] = True,
    reference_time_limit: Annotated[float, typer.Option(
        "--reference-time-limit", metavar="SECONDS",
        help="Time limit of the reference search per instance.")] = 10.0,
    reference_max_plans: Annotated[int, typer.Option(
        "--reference-max-plans", help="Plans the reference search may examine per instance.",
    )] = 200_000,
) -> None:
    """Solve every instance under PATH... into a JSON-lines file, with baselines.

    Each result is appended (and fsync'd) as its instance finishes: a killed
    run loses nothing written and continues with --resume. Baselines from the
    same run: the exhaustive reference search and the greedy EPLB placement.
    Ends with a summary table; --report md|csv writes it, --plots a cactus plot.
    Exits 1 when any instance is an ERROR (its line says why), else 0.
    """
    from moeplan import bench

    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // max(1, solver_workers))
    if not 0 < workers <= 1024:
        raise InputError(f"--workers: must be in [1, 1024], got {workers}", "workers")
    if not 0 < solver_workers <= 256:
        raise InputError(f"--solver-workers: must be in [1, 256], got {solver_workers}",
                         "solver_workers")
    _check_seconds(time_limit, "--time-limit")
    _check_seconds(reference_time_limit, "--reference-time-limit")
    if reference_max_plans <= 0:
        raise InputError("--reference-max-plans: must be > 0", "reference_max_plans")
    if resume and overwrite:
        raise InputError("--overwrite: cannot be combined with --resume", "overwrite")
    if report is None and report_out is not None:
        suffix = report_out.suffix.lower().lstrip(".")
        if suffix not in ("md", "csv"):
            raise InputError("--report-out: give --report md|csv (or a .md/.csv file name)",
                             "report_out")
        report = ReportFormat(suffix)
    if report is not None and report_out is None:
        report_out = out.with_suffix(f".{report.value}")
    if report_out is not None and (report_out.is_dir() or not report_out.parent.is_dir()):
        raise InputError(f"--report-out: cannot write {report_out} (a directory, or its "
                         "directory does not exist)", "report_out")
    if plots is not None and plots.exists() and not plots.is_dir():
        raise InputError(f"--plots: {plots} is a file, expected a directory", "plots")
    if plots is not None:
        _require_matplotlib("--plots")  # before solving, not after

    engine = bench.make_executor(executor.value, workers, ray_address)  # imports Ray
    if executor == Executor.ray and ray_address:
        _check_ray_address(ray_address)
    options = bench.BenchOptions(
        time_limit_s=time_limit, solver_workers=solver_workers, reference=reference,
        reference_time_limit_s=reference_time_limit, reference_max_plans=reference_max_plans,
        executor=executor.value if executor == Executor.process or not ray_address
        else f"ray@{ray_address}",
    )

    err = Console(stderr=True, highlight=False)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=err,
        transient=False,
    )
    running: list[str] = []
    errors: list[str] = []
    started: list[bool] = []
    task_id: Any = None

    def on_plan(plan: bench.RunPlan) -> None:
        nonlocal task_id
        if plan.read.partial_tail:
            err.print(f"note: {escape(str(out))} ended in a partial line (an interrupted write); "
                      "it was dropped")
        if plan.read.bad_lines:
            err.print(f"warning: {escape(str(out))}: skipped {len(plan.read.bad_lines)} "
                      f"unreadable line(s): {plan.read.bad_lines[:5]}")
        if plan.skipped:
            err.print(f"resume: {plan.skipped} of {len(plan.files)} instances already in "
                      f"{escape(str(out))}")
        task_id = progress.add_task("bench", total=len(plan.todo), current="")
        if plan.todo:
            progress.start()
            started.append(True)

    def show() -> None:
        shown = ", ".join(Path(p).name for p in running[:3])
        more = f" +{len(running) - 3}" if len(running) > 3 else ""
        progress.update(task_id, current=escape(shown + more))

    def on_start(path: str) -> None:
        running.append(path)
        show()

    def on_done(rec: dict[str, Any]) -> None:
        if rec["path"] in running:
            running.remove(rec["path"])
        if rec.get("status") == "ERROR":  # counted here, listed once after the summary table
            errors.append(rec["path"])
            progress.update(task_id, description=f"bench [red]({len(errors)} ERROR)[/]")
        progress.advance(task_id)
        show()

    try:
        records = bench.run_bench(
            paths, out, options=options, workers=workers, executor=engine, resume=resume,
            overwrite=overwrite, on_plan=on_plan, on_start=on_start, on_done=on_done)
    except KeyboardInterrupt:
        if started:
            progress.stop()
            started.clear()
        sys.stderr.write(f"interrupted: results so far are in {out}; rerun with --resume\n")
        raise typer.Exit(130) from None
    finally:
        if started:
            progress.stop()

    # Not a terminal (a log, a pipe): wide enough for the table instead of rich's 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
    console.print(_summary_table(records))
    _errors(console, records)
    console.print(_medians_table(records))
    cactus = None
    if plots is not None:
        from moeplan.plots import cactus_plot

        cactus = cactus_plot(records, plots / "cactus.png")
        console.print(f"cactus plot: {escape(str(cactus))}")
    if report is not None and report_out is not None:
        try:
            if report == ReportFormat.md:
                spliced = bench.write_markdown_report(records, report_out, cactus)
            else:
                spliced = False
                report_out.write_text(bench.report_csv(records), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--report-out: cannot write {report_out} ({exc.strerror})",
                             "report_out") from None
        how = " (generated section replaced)" if spliced else ""
        console.print(f"report: {escape(str(report_out))}{how}")
    console.print(f"results: {escape(str(out))}")
    failed = sum(1 for r in records if r.get("status") == "ERROR")
    if failed:
        sys.stderr.write(f"bench: {failed} of {len(records)} instances are ERROR (listed above; "
                         f"their lines in {out} say why)\n")
        raise typer.Exit(EXIT_NEGATIVE)


@command("plot")
def plot_cmd(
    instance_path: Annotated[str, typer.Argument(
        metavar="PLAN_OR_INSTANCE", show_default=False,
        help="Instance file (YAML or JSON). Without --plan or --claimed it is solved first.")],
    plan: Annotated[str | None, typer.Option(
        "--plan", metavar="SPEC_OR_FILE",
        help="The plan to draw: a plan file (e.g. from 'moeplan solve --out') or "
        "'tp=8,ep=8,pp=2[,batch=N]'.")] = None,
    claimed: Annotated[bool, typer.Option(
        "--claimed", help="Draw the instance's claimed_plan.")] = False,
    out: Annotated[Path, typer.Option(
        "--out", metavar="DIR", help="Directory for the PNG files.")] = Path("."),
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", metavar="SECONDS", help="Solver time limit when solving.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="CP-SAT workers when solving.")] = None,
) -> None:
    """Draw a plan: expert load per EP rank and MoE layer, and memory per GPU.

    Writes INSTANCE-placement.png (heatmap) and INSTANCE-memory.png (bars per
    pipeline stage) to --out. Solves the instance unless --plan or --claimed.
    """
    _check_seconds(time_limit, "--time-limit")
    if workers is not None and not 0 < workers <= 256:
        raise InputError(f"--workers: must be in [1, 256], got {workers}", "workers")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file, expected a directory", "out")
    if plan is not None and claimed:
        raise InputError("--claimed: cannot be combined with --plan", "claimed")
    _require_matplotlib("plot")
    from moeplan import plots

    instance = load_instance_arg(instance_path)
    greedy = None
    if plan is not None or claimed:
        chosen = plan_arg(instance, plan)
    else:
        from solver.planner import solve

        result = solve(instance, time_limit_s=time_limit, workers=workers)
        if result.plan is None:
            sys.stderr.write(f"no plan to draw: the instance is {result.status}"
                             + (f" ({result.explanation.summary})" if result.explanation else "")
                             + "\n")
            raise typer.Exit(EXIT_NEGATIVE)
        chosen = result.plan
        greedy = {e.layer: e.greedy_hottest_load for e in result.experts} or None
    stem = Path(instance_path).stem
    heat = plots.placement_heatmap(instance, chosen, out / f"{stem}-placement.png",
                                   greedy_hottest=greedy)
    mem = plots.memory_chart(instance, chosen, out / f"{stem}-memory.png")
    console = Console(highlight=False)
    console.print(f"placement heatmap: {escape(str(heat))}", soft_wrap=True)
    console.print(f"memory per stage: {escape(str(mem))}", soft_wrap=True)
