"""Pictures: the bench's cactus plot, and a plan's expert-load heatmap and memory chart.

matplotlib with the non-interactive Agg backend (no display needed); every function writes one
PNG and returns its path.

- :func:`cactus_plot`: instances solved (proved optimal or proved infeasible) against time, the
  planner next to the exhaustive reference search, from bench records.
- :func:`placement_heatmap`: for each MoE layer (rows) and EP rank (columns), the rank's share of
  the layer's routed tokens relative to a perfectly even split (1.0 = balanced); stage
  boundaries are marked. The hottest rank sets the layer's MoE time.
- :func:`memory_chart`: memory per GPU of each pipeline stage (every GPU of a stage holds the
  same), stacked as weights / KV cache / activations / communication buffers / runtime reserve,
  against the GPU's HBM capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solver.costmodel import BYTES_PER_GB  # noqa: E402
from solver.estimate import (  # noqa: E402
    Evaluation,
    Prepared,
    balanced_stages,
    evaluate,
    rank_loads,
)
from solver.loads import LOAD_RESOLUTION  # noqa: E402
from solver.rules import default_redundant  # noqa: E402
from solver.schema import Instance, Plan  # noqa: E402

DPI = 120


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# Cactus plot
# ----------------------------------------------------------------------------------------------


def _solved_times(records: Sequence[dict[str, Any]], which: str) -> list[float]:
    out = []
    for r in records:
        if which == "planner":
            if r.get("status") in ("OPTIMAL", "INFEASIBLE") and r.get("wall_time_s") is not None:
                out.append(float(r["wall_time_s"]))
        else:
            ref = r.get("reference") or {}
            if ref.get("status") in ("OPTIMAL", "INFEASIBLE") and ref.get("time_s") is not None:
                out.append(float(ref["time_s"]))
    return sorted(out)


def cactus_plot(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Instances solved within t seconds, for the planner and the reference search."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    n = len(records)
    floor = 1e-3
    for which, label, style in (("planner", "moeplan planner (CP-SAT)", "-o"),
                                ("reference", "exhaustive reference search", "-s")):
        times = [max(floor, t) for t in _solved_times(records, which)]
        if which == "reference" and not any(r.get("reference") for r in records):
            continue
        if times:
            xs = [times[0]] + times
            ys = [0] + list(range(1, len(times) + 1))
            ax.step(xs, ys, style[0], where="post", label=f"{label}: {len(times)} of {n}")
            ax.plot(times, range(1, len(times) + 1), style[1:], markersize=3,
                    color=ax.lines[-1].get_color())
        else:
            ax.plot([], [], style, label=f"{label}: 0 of {n}")
    limits = {r["reference"].get("time_limit_s") for r in records if r.get("reference")}
    limits.discard(None)
    limits_all = sorted(limits)
    if len(limits) == 1:
        limit = limits.pop()
        ax.axvline(limit, color="grey", linestyle=":", linewidth=1)
        ax.text(limit, 0.3, f" reference limit {limit:g} s", color="grey", fontsize=8,
                rotation=90, va="bottom", ha="right")
    ax.axhline(n, color="black", linewidth=0.6, linestyle="--")
    ax.set_xscale("log")
    longest = max([*_solved_times(records, "planner"), *_solved_times(records, "reference"),
                   *(limits_all or [1.0])])
    ax.set_xlim(floor / 1.5, max(1.0, longest) * 1.5)
    ax.set_xlabel("wall time per instance, s (log scale)")
    ax.set_ylabel("instances solved (proved optimal or infeasible)")
    ax.set_ylim(0, max(1, n) * 1.05)
    ax.set_title(f"Solve times on {n} instances")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# A plan: expert-load heatmap and memory per stage
# ----------------------------------------------------------------------------------------------


def layer_rank_loads(prep: Prepared, plan: Plan) -> tuple[list[int], np.ndarray]:
    """MoE layer indices and the matrix ``[moe layer, EP rank]`` of rank load / mean rank load
    (the plan's placement; the default EPLB placement for layers it does not give)."""
    ep = plan.degrees.ep
    redundant = (plan.redundant_experts if plan.redundant_experts is not None
                 else default_redundant(prep.instance.search, ep))
    placement, _ = prep.placement_of(plan, redundant)
    layers = list(prep.moe_layers)
    mat = np.zeros((len(layers), ep))
    for i, layer in enumerate(layers):
        loads = rank_loads(prep.loads[prep.moe_index[layer]], placement[layer])
        mat[i, : len(loads)] = loads / (LOAD_RESOLUTION / ep)
    return layers, mat


def placement_heatmap(instance: Instance, plan: Plan, path: Path, *,
                      greedy_hottest: dict[int, float] | None = None) -> Path:
    """Heatmap of expert load per EP rank per MoE layer (white = the even share, red = hotter,
    blue = colder). ``greedy_hottest`` (MoE layer -> hottest rank's share of the layer's routed
    tokens under the greedy EPLB placement, as :class:`~solver.schema.LayerExperts` gives it)
    adds a side panel comparing each layer's hottest rank with the greedy one."""
    from matplotlib.colors import TwoSlopeNorm

    prep = Prepared(instance)
    layers, mat = layer_rank_loads(prep, plan)
    d = plan.degrees
    ep = d.ep
    if not layers:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "the model has no MoE layers", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    side = bool(greedy_hottest)
    height = min(10.0, max(4.0, 0.09 * len(layers) + 2.2))
    width = min(16.0, max(7.0, 0.28 * ep + 4.0)) + (2.6 if side else 0.0)
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(1, 3 if side else 2, width_ratios=[4, 1.4, 0.15] if side
                            else [4, 0.15], wspace=0.08 if side else 0.05)
    ax = fig.add_subplot(grid[0, 0])
    cax = fig.add_subplot(grid[0, -1])
    hottest = float(mat.max())
    norm = TwoSlopeNorm(vmin=min(0.5, float(mat.min())), vcenter=1.0, vmax=max(1.5, hottest))
    im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label("rank load / even share (1.0 = balanced)")
    stages = plan.stages or balanced_stages(prep.model.num_layers, d.pp)
    xlabel = f"EP rank (ep = {ep})"
    if len(stages) > 1:
        xlabel += "; black lines: pipeline stage boundaries"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MoE layer")
    ytick_step = max(1, math.ceil(len(layers) / 24))
    yticks = list(range(0, len(layers), ytick_step))
    ax.set_yticks(yticks)
    ax.set_yticklabels([str(layers[i]) for i in yticks], fontsize=8)
    ax.set_xticks(range(0, ep, max(1, math.ceil(ep / 16))))
    boundaries = []
    for st in stages[1:]:
        below = [i for i, layer in enumerate(layers) if layer < st.first_layer]
        if below:
            boundaries.append(below[-1] + 0.5)
            ax.axhline(boundaries[-1], color="black", linewidth=1.2)
    title = (f"{instance.name}: expert load per EP rank and MoE layer\n{d.short()}, "
             f"batch {plan.batch}; hottest rank {hottest:.3f}x the even share")
    if ep <= 16 and len(layers) <= 24:
        for i in range(len(layers)):
            for r in range(ep):
                ax.text(r, i, f"{mat[i, r]:.2f}", ha="center", va="center", fontsize=7)
    if side:
        assert greedy_hottest is not None
        sax = fig.add_subplot(grid[0, 1], sharey=ax)
        rows = np.arange(len(layers))
        planner = mat.max(axis=1)
        greedy = np.array([greedy_hottest.get(layer, np.nan) * ep for layer in layers])
        sax.plot(greedy, rows, "s", color="tab:orange", markersize=3, label="greedy EPLB")
        sax.plot(planner, rows, "o", color="tab:blue", markersize=3, label="planner")
        sax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        for y in boundaries:
            sax.axhline(y, color="black", linewidth=1.2)
        top = float(np.nanmax([planner.max(), np.nanmax(greedy)]))
        sax.set_xlim(0.95, max(1.1, top * 1.05))
        sax.ticklabel_format(axis="x", useOffset=False)
        sax.set_xlabel("hottest rank / even")
        sax.tick_params(axis="y", labelleft=False)
        sax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=7, ncol=2,
                   frameon=False)
        sax.grid(True, axis="x", alpha=0.3)
        title += f" (greedy EPLB: {float(np.nanmax(greedy)):.3f}x)"
    ax.set_title(title, fontsize=10, loc="left")
    return _save(fig, path)


MEMORY_PARTS = ("weights", "KV cache", "activations", "comm buffers", "runtime reserve")
MEMORY_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860")


def stage_memory(ev: Evaluation) -> list[dict[str, float]]:
    """Per stage, bytes per GPU by part; the parts sum to the stage's memory exactly."""
    t = ev.extras.memory_terms
    pp = len(ev.stages)
    q = -(-ev.batch // ev.grid.dp)
    out = []
    for s, st in enumerate(ev.stages):
        costs = ev.costs[st.first_layer: st.last_layer + 1]
        last = s == pp - 1
        logits = int(ev.extras.mem_last[ev.result.s - 1]) - t["lm_head"] if last else 0
        parts = {
            "weights": sum(c.weight_bytes for c in costs)
            + (t["embedding"] if s == 0 else 0) + (t["lm_head"] if last else 0),
            "KV cache": max(q * sum(c.kv_seq_bytes for c in costs),
                            sum(c.kv_max_bytes for c in costs)),
            "activations": t.get("activation_workspace", 0) + logits,
            "comm buffers": t.get("comm_buffers", 0),
            "runtime reserve": t.get("runtime_reserve", 0),
        }
        # Anything the cost model adds that the named parts miss stays visible as activations.
        rest = ev.result.stage_mem_bytes[s] - sum(parts.values())
        parts["activations"] += rest
        out.append(parts)
    return out


def memory_chart(instance: Instance, plan: Plan, path: Path) -> Path:
    """Stacked bars: memory per GPU of each pipeline stage, by part, against HBM capacity."""
    ev = evaluate(instance, plan)
    per_stage = stage_memory(ev)
    pp = len(per_stage)
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.5, 0.9 * pp + 3.0)), 4.8))
    x = np.arange(pp)
    bottom = np.zeros(pp)
    for part, color in zip(MEMORY_PARTS, MEMORY_COLORS, strict=True):
        vals = np.array([p[part] / BYTES_PER_GB for p in per_stage])
        ax.bar(x, vals, bottom=bottom, color=color, label=part, width=0.6)
        bottom += vals
    cap = instance.hardware.hbm_gb
    budget = instance.engine.memory_fraction * cap
    ax.axhline(cap, color="red", linestyle="--", linewidth=1.2)
    ax.text(pp - 0.5, cap, f"HBM {cap:g} GB ", color="red", ha="right", va="bottom", fontsize=8)
    ax.axhline(budget, color="darkorange", linestyle=":", linewidth=1.2)
    ax.text(pp - 0.5, budget, f"engine budget {budget:.1f} GB ", color="darkorange", ha="right",
            va="top", fontsize=8)
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"stage {s}\nlayers {st.first_layer}-{st.last_layer}"
                        for s, st in enumerate(ev.stages)], fontsize=8)
    ax.set_ylabel("memory per GPU, GB (1e9 bytes)")
    ax.set_ylim(0, max(cap, float(bottom.max())) * 1.15)
    d = plan.degrees
    ax.set_title(f"{instance.name}: memory per GPU by pipeline stage\n{d.short()}, "
                 f"batch {plan.batch}, {instance.hardware.name}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
