"""Records → the comparison: per instance and as medians, planner time / reference time, same
GPU count or not, and hottest-rank load planner / greedy; as text cells (the terminal table),
markdown (spliced into a hand-written document between markers) and CSV."""

from __future__ import annotations

import csv
import io
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moeplan.bench.records import STATUSES


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
