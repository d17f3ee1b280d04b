"""Batch solving: a directory of instances → one JSON line per instance, resumable, with baselines.

The engine behind ``moeplan bench`` (:mod:`moeplan.cmd_bench` adds the progress bar, the terminal
summary and the exit code). One module per concern, each importing only those above it:

- :mod:`~moeplan.bench.records`: the record (its fields, its key: path and sha256 of the file
  bytes) and :class:`BenchOptions`, what every worker is told;
- :mod:`~moeplan.bench.worker`: :func:`run_instance` solves one file in a worker and returns its
  record (status ERROR and a one-line message when it cannot); it never raises;
- :mod:`~moeplan.bench.store`: :class:`ResultsFile`, the JSON-lines output, appended and
  ``fsync``'d one whole line at a time, and :func:`read_records`, which skips a torn last line;
- :mod:`~moeplan.bench.executors`: :class:`ProcessExecutor` (a spawn-context process pool) and
  :class:`RayExecutor` (the same function as Ray tasks), at most ``workers`` at a time;
- :mod:`~moeplan.bench.run`: :func:`run_bench` discovers the files, skips with ``resume`` those
  whose (path, sha256) already has a line, runs the rest and returns the records;
- :mod:`~moeplan.bench.report`: :func:`summarize`, :func:`report_markdown`, :func:`report_csv`.

The solver library (:mod:`solver`) knows nothing of this package; plots are :mod:`moeplan.plots`.
"""

from moeplan.bench.executors import (
    Executor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
    ray_runtime_env,
    task_error,
)
from moeplan.bench.records import (
    RECORD_SCHEMA,
    STATUSES,
    BenchOptions,
    display_path,
    error_record,
    one_line,
    same_gpus,
)
from moeplan.bench.report import (
    BENCH_BEGIN,
    BENCH_END,
    DISPLAY_HEADERS,
    ROW_FIELDS,
    Summary,
    display_row,
    report_csv,
    report_markdown,
    splice,
    summarize,
    summary_lines,
    write_markdown_report,
)
from moeplan.bench.run import RunPlan, discover, run_bench
from moeplan.bench.store import ReadResult, ResultsFile, encode_record, read_records
from moeplan.bench.worker import run_instance

__all__ = [
    "BENCH_BEGIN", "BENCH_END", "DISPLAY_HEADERS", "RECORD_SCHEMA", "ROW_FIELDS", "STATUSES",
    "BenchOptions", "Executor", "ProcessExecutor", "RayExecutor", "ReadResult", "ResultsFile",
    "RunPlan", "Summary", "discover", "display_path", "display_row", "encode_record",
    "error_record", "make_executor", "one_line", "ray_runtime_env", "read_records",
    "report_csv", "report_markdown", "run_bench", "run_instance", "same_gpus", "splice",
    "summarize", "summary_lines", "task_error", "write_markdown_report",
]
