"""Vectorised pre-bounds: which ``s`` of a grid, and which grids at all, no necessary condition
rules out, computed over every ``s`` at once in floating point with a small slack so rounding can
only keep what the exact bounds (:meth:`solver.planner.candidates.Candidate.bounded`) then drop,
never drop a feasible one. A grid's stage profile (sums and extremes over its layers) is shared
by every pipeline depth, so a grid can be rejected before it is costed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from solver import timing
from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.planner.goals import Goals
from solver.schema import Grid

if TYPE_CHECKING:
    from solver.planner.candidates import GridCost


#: Relative slack of the vectorised pre-bound: it only drops an ``s`` that misses a goal by more
#: than this, so float rounding can never drop a feasible one (the exact bound follows).
PREBOUND_SLACK = 1e-6


def _gpu_lb_above(gpi: int, instance_rate_ub: np.ndarray, goals: Goals,
                  fixed_replicas: int | None, cutoff: int | None) -> np.ndarray:
    """Where the GPUs of every plan are surely above ``cutoff``: ``gpi`` times the fewest
    replicas an instance at most ``instance_rate_ub`` tokens/s needs (conservative in float)."""
    if cutoff is None:
        return np.zeros(instance_rate_ub.shape, dtype=bool)
    if fixed_replicas is not None:
        r_lb = np.full(instance_rate_ub.shape, float(fixed_replicas))
    elif goals.min_rate_total is not None:
        with np.errstate(divide="ignore"):
            r_lb = np.ceil(goals.min_rate_total * (1 - PREBOUND_SLACK) / instance_rate_ub)
        r_lb = np.maximum(r_lb, 1.0)
    else:
        r_lb = np.ones(instance_rate_ub.shape)
    return gpi * r_lb > cutoff


def viable_s(gc: GridCost, goals: Goals, fixed_replicas: int | None = None,
             cutoff: int | None = None) -> np.ndarray:
    """The ``s`` of ``gc`` that no necessary condition rules out, by vectorised arithmetic over
    every ``s`` at once (conservative: exact bounds follow in :meth:`Candidate.bounded`); with a
    ``cutoff``, also those whose every plan has more GPUs than it."""
    g = gc.grid
    pp, gpi = g.pp, g.gpus_per_instance
    s_all = np.array(gc.s_range(), dtype=np.int64)
    if len(s_all) == 0:
        return s_all
    i = s_all - 1
    inp, max_inp, out = gc.workload
    free = gc.token_budget - s_all
    rho = np.where(free > 0, s_all * inp / (out * np.maximum(free, 1)), np.inf)
    keep = rho < 1

    def stage_lb(arr: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        cols = arr[:, i]
        total = cols.sum(axis=0) + first[i] + last[i]
        if pp == 1:
            return total
        return np.maximum.reduce([-(-total // pp), cols.max(axis=0), cols[0] + first[i],
                                  cols[-1] + last[i]])

    m_lb = stage_lb(gc.avg, gc.first_avg, gc.last_avg).astype(np.float64)
    keep &= m_lb < timing.NEVER
    hop = gc.hop_avg[i] if pp > 1 else 0
    tpot_lb = pp * (m_lb + hop + gc.overhead)
    if goals.tpot_ns is not None:
        keep &= tpot_lb <= goals.tpot_ns * (1 + PREBOUND_SLACK)
    q_hi = np.minimum(gc.q_hi, pp * s_all)
    q_lo = np.maximum(gc.q_lo, pp * (s_all - 1) + 1)
    # memory: every stage holds its layers, each stage at least one layer
    fixed_total = pp * gc.mem_every + gc.mem_first + gc.mem_last[i]
    room = pp * gc.budget - fixed_total - int(gc.w_prefix[-1])
    kvs = int(gc.kvs_prefix[-1])
    q_mem = np.where(kvs > 0, room // max(kvs, 1), q_hi)
    q_top = np.minimum(q_hi, q_mem)
    keep &= (q_top >= q_lo) & (room >= (int(gc.kvm_prefix[-1]) if pp == 1 else 0))
    if goals.min_rate_per_gpu is not None:
        rate = g.dp * q_top * timing.NS_PER_S / (tpot_lb * gpi)
        keep &= rate >= goals.min_rate_per_gpu * (1 - PREBOUND_SLACK)
    if goals.ttft_ns is not None:
        f_lb = stage_lb(gc.full, gc.first_full, gc.last_full).astype(np.float64)
        hop_full = gc.hop_full[i] if pp > 1 else 0
        trip = (f_lb + hop_full + gc.overhead) + (pp - 1) * (m_lb + hop + gc.overhead)
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(keep, rho * (inp / np.maximum(free, 1)) / (2 * (1 - rho)), np.inf)
        own = np.ceil(max_inp / np.maximum(free, 1))
        keep &= trip * (wait + own) <= goals.ttft_ns * (1 + PREBOUND_SLACK)
    if goals.max_gpus is not None:
        keep &= gpi <= goals.max_gpus
    keep &= ~_gpu_lb_above(gpi, g.dp * q_top * timing.NS_PER_S / tpot_lb, goals,
                           fixed_replicas, cutoff)
    return s_all[keep]


@dataclass
class StageProfile:
    """What every pipeline depth of one stage grid shares, over ``s = 1..S``: sums and extremes
    of the per-layer step times and memory (the pipeline hop aside)."""

    total_avg: np.ndarray  # Σ layers + embedding + LM head
    max_avg: np.ndarray  # the slowest single layer (with its stage's extras at the ends)
    total_full: np.ndarray
    max_full: np.ndarray
    weights: int
    kv_seq: int
    kv_max: int
    mem_fixed: int  # workspace, buffers, reserve (per stage)
    mem_ends: np.ndarray  # embedding + LM head + logits


def stage_profile(prep: Prepared, grid: Grid, hot: dict[int, HotRank]) -> StageProfile:
    g1 = grid._replace(pp=1)
    costs = prep.layer_costs(g1, hot, 1)
    ex = prep.extras(g1, hot, 1)
    avg = np.stack([c.avg_ns for c in costs])
    full = np.stack([c.full_max_ns for c in costs])

    def ends(arr: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        n = arr.shape[1]
        return np.maximum.reduce([arr.max(axis=0), arr[0] + first[:n], arr[-1] + last[:n]])

    n = avg.shape[1]
    return StageProfile(
        total_avg=avg.sum(axis=0) + ex.first_avg_ns[:n] + ex.last_avg_ns[:n],
        max_avg=ends(avg, ex.first_avg_ns, ex.last_avg_ns),
        total_full=full.sum(axis=0) + ex.first_full_ns[:n] + ex.last_full_ns[:n],
        max_full=ends(full, ex.first_full_ns, ex.last_full_ns),
        weights=sum(c.weight_bytes for c in costs), kv_seq=sum(c.kv_seq_bytes for c in costs),
        kv_max=sum(c.kv_max_bytes for c in costs), mem_fixed=ex.mem_every,
        mem_ends=ex.mem_first + ex.mem_last[:n])


def profile_admits(p: StageProfile, grid: Grid, q_range: tuple[int, int], goals: Goals,
                   budget: int, token_budget: int, workload: tuple[int, int, int],
                   overhead: int, fixed_replicas: int | None = None,
                   cutoff: int | None = None) -> bool:
    """Whether any ``s`` of ``grid`` (its pipeline depth over the shared stage profile) passes the
    necessary conditions of :func:`viable_s` with the hop left out (a weaker, valid test)."""
    pp, gpi = grid.pp, grid.gpus_per_instance
    q_lo, q_hi = q_range
    s_all = np.arange(-(-q_lo // pp), -(-q_hi // pp) + 1)
    if len(s_all) == 0:
        return False
    i = s_all - 1
    m_lb = np.maximum(-(-p.total_avg[i] // pp), p.max_avg[i]) if pp > 1 else p.total_avg[i]
    keep = m_lb < timing.NEVER
    tpot_lb = pp * (m_lb.astype(np.float64) + overhead)
    if goals.tpot_ns is not None:
        keep &= tpot_lb <= goals.tpot_ns * (1 + PREBOUND_SLACK)
    room = pp * budget - pp * p.mem_fixed - p.mem_ends[i] - p.weights
    q_top = np.minimum(np.minimum(q_hi, pp * s_all), np.where(p.kv_seq > 0,
                                                              room // max(p.kv_seq, 1), q_hi))
    keep &= q_top >= np.maximum(q_lo, pp * (s_all - 1) + 1)
    if goals.min_rate_per_gpu is not None:
        keep &= (grid.dp * q_top * timing.NS_PER_S / (tpot_lb * gpi)
                 >= goals.min_rate_per_gpu * (1 - PREBOUND_SLACK))
    if goals.ttft_ns is not None:
        inp, max_inp, out = workload
        free = np.maximum(token_budget - s_all, 1)
        rho = s_all * inp / (out * free)
        f_lb = np.maximum(-(-p.total_full[i] // pp), p.max_full[i]) if pp > 1 \
            else p.total_full[i]
        trip = (f_lb + overhead) + (pp - 1) * (m_lb + overhead)
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(rho < 1, rho * (inp / free) / (2 * (1 - rho)), np.inf)
        keep &= trip * (wait + np.ceil(max_inp / free)) <= goals.ttft_ns * (1 + PREBOUND_SLACK)
    keep &= ~_gpu_lb_above(gpi, grid.dp * q_top * timing.NS_PER_S / tpot_lb, goals,
                           fixed_replicas, cutoff)
    return bool(keep.any())
