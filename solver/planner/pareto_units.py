"""The units of the rate frontier's best-first search (:mod:`solver.planner.pareto_rate`): a
stage grid at one pipeline depth, with an upper bound on the tokens/s per GPU of its plans under
any TPOT cap (docs/pareto.md, "How it is solved" and "Which grids").

    rate/GPU = dp·q / (TPOT · pp·tp·cp·dp) <= q_top(s) / (pp·tp·cp · pp·max(⌈Σ/pp⌉, max layer))

with ``Σ`` the stage profile's whole-model step at ``s`` under the busiest ranks' proved *lower*
bounds (the cost is monotone in them), no pipeline hop, and ``q_top`` the most sequences memory
admits; ``s`` ranges over the values whose TPOT bound is within the cap and whose TTFT bound
meets the target. Per ``(tp, cp, ep, etp)`` the smallest ``dp`` of the space stands for every
multiple (a stage grid's per-GPU step times and memory do not depend on ``dp``); with a
total-rate target *and* max GPUs every multiple within max GPUs is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from solver import timing
from solver.estimate import Prepared
from solver.planner.cpsat import check_stop
from solver.planner.goals import Goals
from solver.planner.placements import Placements
from solver.planner.prebound import stage_profile
from solver.schema import Grid, divisors

__all__ = ["Unit", "lower_hot", "rate_units", "stage_grids"]


@dataclass
class Unit:
    """A stage grid at one pipeline depth, with its bound arrays over ``s`` (valid ``s`` only):
    ``tpot_lb`` non-decreasing, ``rate_ub`` the running maximum of the rate bound."""

    grid: Grid
    s: np.ndarray
    tpot_lb: np.ndarray
    rate_ub: np.ndarray

    def bound(self, tpot_cap: int | None) -> float:
        """The most tokens/s per GPU any plan of this unit with TPOT within the cap reaches."""
        if tpot_cap is None:
            return float(self.rate_ub[-1])
        i = int(np.searchsorted(self.tpot_lb, tpot_cap, side="right"))
        return float(self.rate_ub[i - 1]) if i else -1.0


def in_space(prep: Prepared, g: Grid) -> bool:
    """Whether the stage grid ``g`` (pp = 1) is one :meth:`PlanSpace.inner` lists: the
    instance's restrictions and the grid rules (no batch yet)."""
    from solver import rules

    space, s = prep.space, prep.instance.search
    if g.dp > space.bmax or (s.max_cp and g.cp > s.max_cp) or (s.max_dp and g.dp > s.max_dp):
        return False
    if not all(space.allowed(k, v) for k, v in g._asdict().items() if k != "pp"):
        return False
    shape = space.shape(g, g.dp, space.redundant(g.ep))
    return not rules.violations(shape, rules.GRID_RULES)


def stage_grids(prep: Prepared, goals: Goals) -> Iterator[Grid]:
    """Per (tp, cp, ep, etp) the stage grids that stand for it (module docstring)."""
    space = prep.space
    m = prep.model
    slots = m.num_experts + prep.instance.search.redundant_experts
    eps = sorted(set(divisors(slots)) | set(divisors(m.num_experts))) if m.moe_layers \
        else [1]
    etps = divisors(m.expert_ffn_width) if m.moe_layers else [1]
    keep_multiples = bool(goals.max_gpus and goals.min_rate_total)
    restricted = dp_restricted(prep)
    limit = goals.max_gpus or (1 << 30)
    for tp, cp in sorted({(tp, cp) for tp, cp, _, _ in space._factors}):
        for etp in etps:
            for ep in eps:
                n0 = math.lcm(tp * cp, etp * ep)
                dp0 = n0 // (tp * cp)
                k = 1
                while dp0 * k <= space.bmax and n0 * k <= limit:
                    g = Grid(tp, cp, dp0 * k, ep, etp, n0 * k // (etp * ep), 1)
                    if in_space(prep, g):
                        yield g
                        if not keep_multiples:
                            break
                    elif not restricted:
                        break  # grid rules do not depend on dp: no multiple is in either
                    k += 1


def dp_restricted(prep: Prepared) -> bool:
    s = prep.instance.search
    return bool("dp" in s.fix or "edp" in s.fix or s.forbid.get("dp")
                or s.forbid.get("edp") or s.max_dp)


def lower_hot(prep: Prepared, placements: Placements, ep: int, redundant: int) -> dict:
    """Per MoE layer a lower bound on the busiest EP rank's load under any placement
    (:func:`solver.placement.analytic_lower_bound` with the EPLB greedy as the upper end),
    without solving the placements: valid for the bound, cheap for every ep."""
    from solver.baselines import greedy_placement
    from solver.costmodel import HotRank
    from solver.placement import analytic_lower_bound

    if ep == 1:
        return placements.hot(1, 0)  # one rank holds every expert: exact and cheap
    slots = (prep.model.num_experts + redundant) // ep
    memo: dict[tuple[int, ...], int] = {}
    out = {}
    for layer in prep.moe_layers:
        loads = np.sort(prep.loads[prep.moe_index[layer]])[::-1]
        key = tuple(int(x) for x in loads)
        if key not in memo:
            greedy = greedy_placement(loads, ep, redundant)
            memo[key] = analytic_lower_bound(loads, ep, redundant, greedy.hottest)
        out[layer] = HotRank(memo[key], slots)
    return out


def rate_units(prep: Prepared, goals: Goals, placements: Placements,
               should_stop: Callable[[], bool] | None = None) -> list[Unit]:
    """The units of ``prep``'s space that may hold a plan meeting ``goals`` (any TPOT cap), with
    their bounds (module docstring); the busiest ranks at their proved lower bounds."""
    space = prep.space
    wl, cm = prep.instance.workload, prep.cm
    inp, max_inp, out = wl.input_len, wl.max_input, wl.output_len
    o = cm.overhead_ns
    pps = np.array([pp for pp in range(1, space.max_pp + 1) if space.allowed("pp", pp)])
    units: list[Unit] = []
    hots: dict[int, dict] = {}
    for g in stage_grids(prep, goals):
        check_stop(should_stop)
        if prep.moe_layers and g.ep not in hots:
            hots[g.ep] = lower_hot(prep, placements, g.ep, space.redundant(g.ep))
        p = stage_profile(prep, g, hots.get(g.ep, {}))
        # no rank holds more sequences per microbatch than memory admits at any depth
        room_per_stage = cm.memory_budget - p.mem_fixed
        S = len(p.total_avg)
        if p.kv_seq > 0:
            S = max(1, min(S, room_per_stage // p.kv_seq + 1))
        s = np.arange(1, S + 1)
        free = cm.budget - s
        rho = np.where(free > 0, s * inp / (out * np.maximum(free, 1)), np.inf)
        P = pps[:, None]
        gpi = P * g.gpus_per_stage
        q_lo = -(-space.bmin // g.dp)
        q_hi = np.minimum(space.bmax // g.dp, P * space.s_stable)
        total, top = p.total_avg[:S][None, :], p.max_avg[:S][None, :]
        m_lb = np.where(P > 1, np.maximum(-(-total // P), top), total)
        keep = (rho < 1)[None, :] & (m_lb < timing.NEVER) & (q_hi >= q_lo)
        tpot_lb = P * (m_lb.astype(np.float64) + o)
        room = P * (cm.memory_budget - p.mem_fixed) - p.mem_ends[:S][None, :] - p.weights
        q_mem = room // p.kv_seq if p.kv_seq > 0 else np.broadcast_to(q_hi, room.shape)
        q_top = np.minimum(np.minimum(q_hi, P * s[None, :]), q_mem)
        keep &= q_top >= np.maximum(q_lo, P * (s[None, :] - 1) + 1)
        keep &= (P > 1) | (room >= p.kv_max)
        if goals.max_gpus is not None:
            keep &= gpi <= goals.max_gpus
        if goals.ttft_ns is not None:
            tf, tm = p.total_full[:S][None, :], p.max_full[:S][None, :]
            f_lb = np.where(P > 1, np.maximum(-(-tf // P), tm), tf)
            trip = (f_lb + o) + (P - 1) * (m_lb + o)
            with np.errstate(divide="ignore", invalid="ignore"):
                wait = np.where(rho < 1, rho * (inp / np.maximum(free, 1)) / (2 * (1 - rho)),
                                np.inf)
            keep &= trip * (wait + np.ceil(max_inp / np.maximum(free, 1)))[None, :] \
                <= goals.ttft_ns * (1 + 1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = q_top * timing.NS_PER_S / (tpot_lb * P * g.tp * g.cp)
        if goals.min_rate_per_gpu is not None:
            keep &= rate >= goals.min_rate_per_gpu * (1 - 1e-6)
        for row in np.flatnonzero(keep.any(axis=1)):
            k = keep[row]
            # slack in the safe direction: a bound never below the exact figure
            units.append(Unit(g._replace(pp=int(pps[row])), s[k], tpot_lb[row, k] * (1 - 1e-9),
                              np.maximum.accumulate(rate[row, k] * (1 + 1e-9))))
    return units
