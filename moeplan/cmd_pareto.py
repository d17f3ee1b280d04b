"""``moeplan pareto``: the trade-off frontier of an instance, each point proved optimal for its
constraint, as a table, an ASCII chart, CSV/JSON and a PNG (matplotlib, the plots extra)."""

from __future__ import annotations

import csv
import io
import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from moeplan import oneline
from moeplan.cli import (
    JsonOption,
    _stderr_line,
    command,
    emit_json,
    oneline_or_file,
)
from moeplan.cmd_bench import _require_matplotlib
from solver.instance import InputError
from solver.schema import MAX_BATCH, MAX_TIME_LIMIT_S


class FrontierKind(str, Enum):
    rate = "rate"
    gpus = "gpus"


class ServingKind(str, Enum):
    aggregated = "aggregated"
    disaggregated = "disaggregated"
    both = "both"


def _batch_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    try:
        pair = (int(lo), int(hi)) if sep else (1, int(lo))
    except ValueError:
        raise InputError(f"--batch: expected MAX or MIN:MAX, got '{text}'", "batch") from None
    if not 1 <= pair[0] <= pair[1] <= MAX_BATCH:
        raise InputError(f"--batch: need 1 <= MIN <= MAX <= {MAX_BATCH}, got '{text}'", "batch")
    return pair


@command("pareto")
def pareto_cmd(
    instance_path: Annotated[str | None, typer.Argument(
        metavar="[INSTANCE]", help="Instance file (YAML or JSON), or the one-line flags.",
        show_default=False)] = None,
    frontier: Annotated[FrontierKind, typer.Option(
        "--frontier", help="rate: output tokens/s per GPU against tokens/s per user (the batch "
        "free); gpus: GPUs against TTFT (the instance as given).")] = FrontierKind.rate,
    points: Annotated[int, typer.Option("--points", help="Most points to find.")] = 16,
    step: Annotated[float, typer.Option(
        "--step", help="rate: each TPOT cap is this factor of the last (0 < step < 1).")] = 0.95,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", metavar="SECONDS", help="For the whole frontier.")] = 60.0,
    batch: Annotated[str | None, typer.Option(
        "--batch", metavar="[MIN:]MAX", help="rate: the batch range (default: any batch).")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", metavar="FILE",
                                                 help="Write the points as CSV.")] = None,
    png: Annotated[Path | None, typer.Option(
        "--png", metavar="FILE", help="Draw the frontier (needs matplotlib).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="DIR", help="Write instance.json, point-NN.json (plans for export and "
        "verify), pareto.json and pareto.csv here.")] = None,
    chosen: Annotated[bool, typer.Option(
        "--chosen/--no-chosen", help="Also solve the instance itself and mark its plan.")] = True,
    serving: Annotated[ServingKind | None, typer.Option(
        "--serving", help="rate: the frontier of aggregated plans, of two-pool plans (needs the "
        "total-rate target) or both (default: the instance's serving; best gives both).",
        show_default=False)] = None,
    as_json: JsonOption = False,
    model: oneline.Model = None, gpu: oneline.Gpu = None, isl: oneline.Isl = None,
    osl: oneline.Osl = None, ttft: oneline.Ttft = None, tpot: oneline.Tpot = None,
    rate: oneline.Rate = None, max_gpus: oneline.MaxGpus = None, engine: oneline.Engine = None,
) -> None:
    """The frontier of tokens/s per GPU against tokens/s per user (of aggregated plans, two-pool
    plans or both: --serving), or GPUs against TTFT, each point a plan proved optimal for its
    constraint; the planner's own plan is marked.

    Exit 1 when no point exists.
    """
    from solver.contract import dump
    from solver.planner.pareto import pareto

    if not (math.isfinite(time_limit) and 0 < time_limit <= MAX_TIME_LIMIT_S):
        raise InputError(f"--time-limit: must be in (0, {MAX_TIME_LIMIT_S:g}] seconds, got "
                         f"{time_limit}", "time_limit")
    if not 1 <= points <= 256:
        raise InputError(f"--points: must be in [1, 256], got {points}", "points")
    if not 0 < step < 1:
        raise InputError(f"--step: must be in (0, 1), got {step}", "step")
    if png is not None:
        _require_matplotlib("--png")
    for path, name in ((csv_out, "--csv"), (png, "--png")):
        if path is not None and (path.is_dir() or not path.parent.is_dir()):
            raise InputError(f"{name}: cannot write {path}", name.lstrip("-"))
    instance = oneline_or_file(instance_path, model=model, gpu=gpu, isl=isl, osl=osl, ttft=ttft,
                               tpot=tpot, rate=rate, max_gpus=max_gpus, engine=engine)

    def progress(p: Any) -> None:
        if not as_json:
            kind = "" if p.serving == "aggregated" else f" ({p.serving})"
            _stderr_line(f"point {p.index}{kind}: {p.output_tokens_per_s_per_gpu:,.1f} tokens/s "
                         f"per GPU at {p.tokens_per_s_per_user:,.2f} tokens/s per user, "
                         f"{p.gpus} GPUs ({p.constraint})")

    doc = pareto(instance, frontier=frontier.value, points=points, step=step,
                 time_limit_s=time_limit, batch=_batch_range(batch), chosen=chosen,
                 serving=serving.value if serving is not None else None, on_point=progress)
    table = csv_text(doc)
    if csv_out is not None:
        csv_out.write_text(table)
    if png is not None:
        pareto_png(doc, png)
    if out is not None:
        write_pareto(doc, out, table)
    if as_json:
        emit_json(dump(doc))
    else:
        render(doc)
    if not doc.points:
        raise typer.Exit(1)


CSV_FIELDS = ("index", "gpus", "tp", "pp", "dp", "cp", "ep", "etp", "edp", "replicas", "batch",
              "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "tpot_s", "ttft_s",
              "constraint", "proved")


def csv_text(doc: Any) -> str:
    """One row per point. Frontiers with two-pool points add ``serving`` (first) and ``prefill``
    (the prefill pool: degrees, replicas, tokens per step); the degree columns of a two-pool
    point are its decode pool's."""
    pools = doc.serving != "aggregated"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((("serving",) if pools else ()) + CSV_FIELDS + (("prefill",) if pools else ()))
    for p in doc.points:
        d = _decode_plan(p).degrees
        row = [p.index, p.gpus, d.tp, d.pp, d.dp, d.cp, d.ep, d.etp, d.edp, d.replicas,
               p.batch, f"{p.output_tokens_per_s_per_gpu:.6g}",
               f"{p.tokens_per_s_per_user:.6g}", f"{p.tpot_s:.6g}", f"{p.ttft_s:.6g}",
               p.constraint, p.proved]
        if pools:
            pf = p.disagg_plan.prefill if p.disagg_plan is not None else None
            row = [p.serving, *row, "" if pf is None else
                   f"{pf.degrees.short()},tokens_per_step={pf.tokens_per_step}"]
        w.writerow(row)
    return buf.getvalue()


def _decode_plan(p: Any) -> Any:
    """The plan whose degrees and batch a row shows: the plan, or a two-pool plan's decode
    pool."""
    return p.plan if p.plan is not None else p.disagg_plan.decode


def _degrees(p: Any) -> str:
    def one(d: Any) -> str:
        return f"tp{d.tp} pp{d.pp} dp{d.dp} cp{d.cp} ep{d.ep} etp{d.etp} x{d.replicas}"

    if p.plan is not None:
        return one(p.plan.degrees)
    dp = p.disagg_plan
    return f"P {one(dp.prefill.degrees)} + D {one(dp.decode.degrees)}"


def write_pareto(doc: Any, out: Path, table: str) -> None:
    from solver.contract import disagg_plan_file, dump, plan_file

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "instance.json").write_text(
            json.dumps(doc.instance.model_dump(mode="json"), indent=1) + "\n")
        for p in doc.points:
            plan = plan_file(p.plan) if p.plan is not None else disagg_plan_file(p.disagg_plan)
            (out / f"point-{p.index:02d}.json").write_text(
                json.dumps(dump(plan), indent=1) + "\n")
        (out / "pareto.json").write_text(json.dumps(dump(doc), indent=1) + "\n")
        (out / "pareto.csv").write_text(table)
    except OSError as exc:
        raise InputError(f"--out: cannot write {out} ({exc.strerror})", "out") from None


def _axes(doc: Any) -> tuple[str, str, Any, Any]:
    if doc.frontier == "rate":
        return ("tokens/s per user", "output tokens/s per GPU",
                lambda p: p.tokens_per_s_per_user, lambda p: p.output_tokens_per_s_per_gpu)
    return ("TTFT, s", "GPUs", lambda p: p.ttft_s, lambda p: p.gpus)


def ascii_chart(doc: Any, width: int = 64, height: int = 16) -> str:
    """Points as ``*`` (``0``-``9`` for the first ten indices; with both frontiers, two-pool
    points as ``d``), the chosen plan as ``C``."""
    xlabel, ylabel, fx, fy = _axes(doc)
    both = doc.serving == "both"

    def mark(p: Any) -> str:
        if both and p.serving == "disaggregated":
            return "d"
        return str(p.index) if p.index < 10 else "*"

    items = [(fx(p), fy(p), mark(p)) for p in doc.points]
    if doc.chosen is not None:
        items.append((fx(doc.chosen), fy(doc.chosen), "C"))
    if not items:
        return ""
    xs, ys = [i[0] for i in items], [i[1] for i in items]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    grid = [[" "] * width for _ in range(height)]
    for x, y, m in items:
        c = round((x - x0) / (x1 - x0) * (width - 1))
        r = height - 1 - round((y - y0) / (y1 - y0) * (height - 1))
        grid[r][c] = m if grid[r][c] in (" ", "*", "d") or m == "C" else grid[r][c]
    lines = [f"{ylabel} (from {y0:,.1f} to {y1:,.1f})"]
    lines += ["|" + "".join(row) for row in grid]
    lines.append("+" + "-" * width)
    lines.append(f" {xlabel}: {x0:,.2f} ... {x1:,.2f}")
    if both:
        lines.append(" 0-9, *: aggregated points; d: two-pool points; C: chosen")
    return "\n".join(lines)


def render(doc: Any) -> None:
    echo = typer.echo
    serving = doc.serving
    what = ("output tokens/s per GPU against tokens/s per user" if doc.frontier == "rate"
            else "GPUs against TTFT")
    if serving != "aggregated":
        what += {"disaggregated": ", two-pool plans", "both": ", aggregated and two-pool "
                 "plans"}[serving]
    echo(f"frontier of {what}: {len(doc.points)} point(s) in {doc.solve_time_s:.1f} s "
         f"({doc.stopped})")
    echo(f"each point: {doc.objective}")
    if serving != "aggregated":
        echo("two-pool points: tokens/s per GPU at the planned rate (the total-rate target) "
             "over both pools' GPUs; degrees P = prefill pool, D = decode pool, batch = per "
             "decode instance")
    echo("")
    width = max([34, *(len(_degrees(p)) for p in doc.points)])
    both = serving == "both"
    header = (f"{'#':>2}  " + (f"{'serving':<13} " if both else "")
              + f"{'GPUs':>5}  {'degrees':<{width}} {'batch':>6}  {'tok/s/GPU':>10}  "
              f"{'tok/s/user':>10}  {'TPOT ms':>8}  {'TTFT s':>7}  proved")
    echo(header)
    for p in doc.points:
        mark = " <- chosen" if doc.chosen is not None and doc.chosen.on_frontier == p.index \
            else ""
        kind = f"{p.serving:<13} " if both else ""
        echo(f"{p.index:>2}  {kind}{p.gpus:>5}  {_degrees(p):<{width}} {p.batch:>6}  "
             f"{p.output_tokens_per_s_per_gpu:>10,.1f}  {p.tokens_per_s_per_user:>10,.2f}  "
             f"{p.tpot_s * 1e3:>8.2f}  {p.ttft_s:>7.3f}  {'yes' if p.proved else 'no'}{mark}")
    c = doc.chosen
    if c is not None:
        where = (f"point {c.on_frontier}" if c.on_frontier is not None else
                 f"dominated by point {c.dominated_by}" if c.dominated_by is not None else
                 "not on the frontier's points")
        if c.plan is not None:
            plan = f"{c.plan.degrees.short()}, batch {c.plan.batch}"
        else:
            dp = c.disagg_plan
            plan = (f"two pools: prefill {dp.prefill.degrees.short()}, decode "
                    f"{dp.decode.degrees.short()}, batch {dp.decode.batch}")
        echo("")
        echo(f"chosen (moeplan solve): {c.gpus} GPUs, {plan}: "
             f"{c.output_tokens_per_s_per_gpu:,.1f} tokens/s per GPU at "
             f"{c.tokens_per_s_per_user:,.2f} tokens/s per user; {where}")
    chart = ascii_chart(doc)
    if chart:
        echo("")
        echo(chart)


def _annotation(p: Any) -> str:
    def one(d: Any) -> str:
        return f"tp{d.tp} pp{d.pp} dp{d.dp} ep{d.ep}"

    if p.plan is not None:
        return f"{one(p.plan.degrees)}, b{p.batch}"
    dp = p.disagg_plan
    return (f"P {one(dp.prefill.degrees)} x{dp.prefill.degrees.replicas} + D "
            f"{one(dp.decode.degrees)} x{dp.decode.degrees.replicas}, b{p.batch}")


def pareto_png(doc: Any, path: Path) -> Path:
    """The frontier as a line through its points (with both frontiers: one line and marker each,
    and a legend), the chosen plan as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xlabel, ylabel, fx, fy = _axes(doc)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = {"aggregated": ("-o", "tab:blue", "aggregated"),
              "disaggregated": ("--s", "tab:green", "disaggregated (two pools)")}
    serving = doc.serving
    for kind, (fmt, color, name) in styles.items():
        pts = [p for p in doc.points if p.serving == kind]
        if not pts and not (kind == "aggregated" and serving == "aggregated"):
            continue
        xs, ys = [fx(p) for p in pts], [fy(p) for p in pts]
        label = ("frontier (each point proved optimal)" if serving == "aggregated" else
                 f"{name} frontier")
        ax.plot(xs, ys, fmt, color=color, label=label)
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(f"{p.index}: {_annotation(p)}", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=6)
    if doc.chosen is not None:
        ax.plot([fx(doc.chosen)], [fy(doc.chosen)], "*", color="tab:red", markersize=14,
                label="chosen (moeplan solve)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{doc.instance.name}: {ylabel} against {xlabel}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
