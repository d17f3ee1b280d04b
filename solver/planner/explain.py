"""Why no plan exists, and the nearest values a plan can reach.

When the GPU search proves infeasibility, the same candidates are re-bounded under relaxed goals:
memory alone (does the model fit any grid?), each target alone and then pairs (which conflict?),
and the best TTFT, TPOT and tokens/s per GPU any plan within max GPUs reaches, each with a share
of a small time budget. A value found in time is attained by a real plan; "not proved" marks one
whose share ran out first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

from solver import timing
from solver.planner.bounds import gpu_floor, unreachable
from solver.planner.candidates import Candidate
from solver.planner.goals import TARGET_NAMES, Goals
from solver.planner.partition import least_full, least_slowest
from solver.planner.search import GridBank, Pool, fewest_gpus, key, slowest_cap
from solver.schema import MAX_GPUS, Explanation

_TARGETS = ("ttft_ns", "tpot_ns", "min_rate_per_gpu", "min_rate_total")


def _engine_hint(prep) -> str:
    """The engine rules, when they are in force: what they allow and how to drop them."""
    if not prep.instance.search.engine_rules:
        return ""
    return (f"; the engine rules allow only what {prep.space.engine_summary()} runs, "
            "search.engine_rules: false drops them")


def explain(bank: GridBank, goals: Goals, *, deadline: float, workers: int, seed: int,
            should_stop: Callable[[], bool] | None) -> Explanation:
    prep = bank.prep

    def feasible(g: Goals) -> str:
        return fewest_gpus(Pool(bank, g), deadline, workers, seed, should_stop).status

    if prep.space.next_size_above(0) is None:
        return Explanation(
            summary="No grid satisfies the structural rules and the search options given (check "
            "search.fix / forbid, max_pp / max_cp / max_dp, redundant_experts and the batch "
            f"range{_engine_hint(prep)}).", conflicts=("search space",))
    within = goals.only("max_gpus")
    memory_only = Goals()
    if feasible(memory_only) == "INFEASIBLE":
        need = _least_memory(Pool(bank, Goals()))
        return Explanation(
            summary=f"The model does not fit any allowed grid: even the most sharded one needs "
            f"about {need / 1e9:.1f} GB per GPU against the engine's "
            f"{prep.cm.memory_budget / 1e9:.1f} GB ({prep.instance.engine.memory_fraction:g} of "
            f"{prep.instance.hardware.hbm_gb:g} GB). Allow more pipeline stages (max_pp), a "
            "smaller batch or context, a larger engine.gpu_memory_utilization or lower precision.",
            conflicts=("memory",), nearest={"min_gb_per_gpu_needed": round(need / 1e9, 2)})
    active = [k for k in _TARGETS if getattr(goals, k) is not None]
    limit = f" within max_gpus = {goals.max_gpus}" if goals.max_gpus is not None else ""
    conflicts: list[str] = []
    lines: list[str] = []
    for k in active:
        why = unreachable(prep, goals.only(k))
        if why is not None:
            conflicts.append(TARGET_NAMES[k])
            lines.append(why)
        elif len(active) == 1:
            # the search that called us proved these very goals infeasible: no re-solve needed
            conflicts.append(TARGET_NAMES[k] + (" + max_gpus" if goals.max_gpus else ""))
            floor = gpu_floor(prep, goals) if k == "min_rate_total" else 1
            lines.append(f"{TARGET_NAMES[k]} alone is out of reach"
                         + (limit or f" within the {MAX_GPUS:,}-GPU limit")
                         + (f" (no plan has fewer than {floor:,} GPUs for that rate, by the "
                            "per-GPU work bound)" if floor > 1 else ""))
        elif feasible(goals.only(k, "max_gpus")) == "INFEASIBLE":
            conflicts.append(TARGET_NAMES[k] + (" + max_gpus" if goals.max_gpus else ""))
            lines.append(f"{TARGET_NAMES[k]} alone is out of reach{limit}")
    if not conflicts:
        for i, a in enumerate(active):
            for b in active[i + 1:]:
                if feasible(goals.only(a, b, "max_gpus")) == "INFEASIBLE":
                    conflicts.append(f"{TARGET_NAMES[a]} + {TARGET_NAMES[b]}")
                    lines.append(f"{TARGET_NAMES[a]} and {TARGET_NAMES[b]} cannot both hold"
                                 f"{limit}")
    nearest, unproved = _nearest(bank, goals, within, deadline)
    if not lines:
        if goals.max_gpus is not None:
            out = fewest_gpus(Pool(bank, goals.without("max_gpus")), deadline, workers, seed,
                              should_stop)
            if out.choice is not None:
                nearest["gpus_needed_without_max_gpus"] = float(out.choice.gpus)
                if out.status != "OPTIMAL":
                    unproved.append("gpus_needed_without_max_gpus")
                conflicts.append("max_gpus")
                lines.append(f"the targets together need {out.choice.gpus} GPUs, above "
                             f"max_gpus = {goals.max_gpus}")
        if not lines:
            conflicts.append(" + ".join(TARGET_NAMES[k] for k in active) or "targets")
            lines.append("the targets cannot all hold at once")
    near = ", ".join(f"{k} = {v:.4g}" + (" (best found, not proved)" if k in unproved else "")
                     for k, v in nearest.items())
    return Explanation(
        summary="No plan meets every target: " + "; ".join(lines) + "."
        + (f" Nearest reachable: {near}." if near else ""),
        conflicts=tuple(conflicts), nearest=nearest)


def _least_memory(pool: Pool) -> float:
    """GB per GPU the most sharded candidate needs on average over its stages."""
    pool.upto(pool.bank.done, float("inf"), None)
    best = float("inf")
    for grid in pool.bank.grids:
        gc = pool.bank.cost(grid)
        pp = grid.pp
        total = (int(gc.w_prefix[-1]) + gc.q_lo * int(gc.kvs_prefix[-1])
                 + pp * gc.mem_every + gc.mem_first + int(gc.mem_last[0]))
        best = min(best, total / pp)
    return best


def _nearest(bank: GridBank, goals: Goals, within: Goals, deadline: float
             ) -> tuple[dict[str, float], list[str]]:
    """Best TTFT, TPOT and tokens/s per GPU over every candidate costed so far that fits memory
    (within max GPUs), by the exact partition routines. Exact over those candidates; "not proved"
    when the costing did not cover the whole space in time."""
    pool = Pool(bank, within)
    complete = pool.upto(bank.done, deadline, None)
    best_ttft = best_tpot = None
    best_rate: Fraction | None = None
    ttft_exact = True
    for n, c in enumerate(pool.cands):
        if n % 64 == 0 and time.monotonic() >= deadline:
            complete = False
            break
        q = c.caps.q_lo
        got = least_slowest(c, q)
        if got is None:
            continue
        m, cuts = got
        tpot = c.tpot(m)
        best_tpot = tpot if best_tpot is None else min(best_tpot, tpot)
        full = least_full(c, q)
        ttft_exact = ttft_exact and c.pp == 1  # TTFT couples both stage times when pp > 1
        if full is not None:
            f, cuts_f = full
            t = c.ttft(f, c.times(cuts_f)[0])
            best_ttft = t if best_ttft is None else min(best_ttft, t)
        for qh in range(c.caps.q_lo, c.caps.q_hi + 1):
            got_h = least_slowest(c, qh, slowest_cap(c, within, qh))
            if got_h is not None:
                r = c.rate_per_gpu(qh, got_h[0])
                best_rate = r if best_rate is None else max(best_rate, r)
    nearest: dict[str, float] = {}
    if best_rate is not None:
        nearest["highest_output_tokens_per_s_per_gpu"] = float(best_rate)
    if best_ttft is not None:
        nearest["lowest_ttft_s"] = best_ttft / timing.NS_PER_S
    if best_tpot is not None:
        nearest["lowest_tpot_s"] = best_tpot / timing.NS_PER_S
    unproved = [] if complete else list(nearest)
    if not ttft_exact and "lowest_ttft_s" in nearest and "lowest_ttft_s" not in unproved:
        unproved.append("lowest_ttft_s")
    return nearest, unproved


__all__ = ["explain", "Candidate", "key"]
