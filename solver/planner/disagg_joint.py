"""The joint search of the two-pool planner (:mod:`solver.planner.disagg`): both pools' searches
sharing costs and placements, the fewest total GPUs ``min_r D(r) + P(r)`` over the receiver
counts, the lowest TTFT among pairs with those GPUs, and the pair as a
:class:`~solver.schema.DisaggPlan` (docs/solver.md, "Two pools": the claim, the loop and the
tie-breaks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from solver.estimate import Prepared
from solver.planner.candidates import INF
from solver.planner.disagg_decode import DecodeBest, DecodeSearch
from solver.planner.disagg_prefill import PrefillBest, PrefillChoice, PrefillSearch
from solver.planner.goals import Goals
from solver.planner.model import Choice
from solver.planner.partition import bounds_of
from solver.planner.placements import Placements
from solver.pools import PoolCosts, receivers
from solver.schema import (
    MAX_GPUS,
    DisaggPlan,
    Instance,
    LayerPlacement,
    Plan,
    PrefillPlan,
    Stage,
)

__all__ = ["Joint", "JointOutcome", "Pair", "plan_of"]


@dataclass
class Pair:
    decode: Choice
    prefill: PrefillChoice

    @property
    def gpus(self) -> int:
        return self.decode.gpus + self.prefill.gpus


@dataclass
class JointOutcome:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN
    pair: Pair | None = None
    bound: int | None = None
    improving: int = 0
    proved: list[str] = field(default_factory=list)
    decode_alone: DecodeBest | None = None
    prefill_alone: PrefillBest | None = None
    eps: set = field(default_factory=set)


def _gpu_cap(instance: Instance) -> int:
    """Max total GPUs: max_gpus, and at the planned rate the per-GPU target's
    ``rate / per-GPU rate``."""
    t = instance.workload.targets
    cap = min(t.max_gpus or MAX_GPUS, MAX_GPUS)
    if t.min_output_tokens_per_s_per_gpu is not None:
        cap = min(cap, math.floor(Fraction(t.min_output_tokens_per_s)
                                  / Fraction(t.min_output_tokens_per_s_per_gpu)))
    return cap


class Joint:
    """Both pools' searches of one solve, sharing costs and placements."""

    def __init__(self, prep: Prepared, placements: Placements, lower: bool = False,
                 cap: int | None = None):
        self.prep = prep
        self.pools = PoolCosts(prep)
        inst = prep.instance
        t = inst.workload.targets
        self.cap = _gpu_cap(inst) if cap is None else cap
        base = Goals.of(t)
        self.prefill_goals = Goals(ttft_ns=base.ttft_ns, max_gpus=max(0, self.cap - 1))
        self.prefill = PrefillSearch(prep, self.pools, placements, self.prefill_goals, lower)
        self.placements = placements
        self.lower = lower
        self.decode: DecodeSearch | None = None

    def decode_search(self, prefill_lb: int) -> DecodeSearch:
        if self.decode is None:
            t = self.prep.instance.workload.targets
            goals = Goals(tpot_ns=Goals.of(t).tpot_ns, min_rate_total=t.min_output_tokens_per_s,
                          max_gpus=max(0, self.cap - prefill_lb))
            self.decode = DecodeSearch(self.prep, self.pools, self.placements, goals,
                                       self.lower)
        return self.decode

    def fewest(self, deadline: float, should_stop, hook=None) -> JointOutcome:
        """Fewest total GPUs over both pools (docs/solver.md, "Two pools")."""
        if self.cap < 2:
            return JointOutcome("INFEASIBLE")
        p_inf = self.prefill.fewest(None, deadline, should_stop)
        if p_inf.choice is None:
            status = "INFEASIBLE" if p_inf.complete else "UNKNOWN"
            return JointOutcome(status, bound=None, prefill_alone=p_inf)
        if self.cap - p_inf.bound < 1:  # no GPU left for a decode pool
            return JointOutcome("INFEASIBLE" if p_inf.complete else "UNKNOWN",
                                bound=None, prefill_alone=p_inf)
        dsearch = self.decode_search(p_inf.bound)
        best: Pair | None = None
        improving = 0
        r = 1
        d_first: DecodeBest | None = None
        complete = p_inf.complete
        while True:
            d = dsearch.fewest(r, deadline, should_stop)
            if d_first is None:
                d_first = d
            complete = complete and d.complete
            if d.choice is None:
                break
            if best is not None and d.choice.gpus + p_inf.bound >= best.gpus:
                break
            recv = receivers(self.prep.cm, d.choice.cand.grid)
            p = self.prefill.fewest(recv, deadline, should_stop,
                                    limit=self.cap - d.choice.gpus)
            complete = complete and p.complete
            if p.choice is not None and d.choice.gpus + p.choice.gpus <= self.cap:
                cand = Pair(d.choice, p.choice)
                if best is None or cand.gpus < best.gpus:
                    best = cand
                    improving += 1
                    if hook is not None:
                        hook(best, min(best.gpus, (d_first.bound if d_first else 0)
                                       + p_inf.bound))
            if not d.complete or not p.complete:
                break
            r = recv + 1
        eps = dsearch.eps | self.prefill.eps
        lb = (d_first.bound if d_first is not None else INF) + p_inf.bound
        if best is None:
            status = "INFEASIBLE" if complete else "UNKNOWN"
            return JointOutcome(status, None, None if lb >= INF else lb, improving,
                                decode_alone=d_first, prefill_alone=p_inf, eps=eps)
        if complete:
            return JointOutcome("OPTIMAL", best, best.gpus, improving, ["fewest total GPUs"],
                                d_first, p_inf, eps)
        return JointOutcome("FEASIBLE", best, min(lb, best.gpus), improving, [], d_first, p_inf,
                            eps)

    def least_ttft(self, outcome: JointOutcome, deadline: float, should_stop) -> JointOutcome:
        """Among plans with the proved fewest GPUs ``G``, the lowest TTFT: every split
        ``G = G_d + G_p``, the decode plan with the most receivers at ``G_d`` and the prefill
        plan with the lowest TTFT at ``G_p`` for those receivers."""
        assert outcome.pair is not None and outcome.decode_alone is not None
        gpus = outcome.pair.gpus
        d_min = outcome.decode_alone.bound
        p_min = outcome.prefill_alone.bound if outcome.prefill_alone else 1
        dsearch = self.decode_search(p_min)
        best = outcome.pair
        for gd in range(d_min, gpus - p_min + 1):
            d, ok = dsearch.at_gpus(gd, deadline, should_stop)
            if not ok:
                return outcome
            if d is None:
                continue
            p, ok = self.prefill.least_ttft_at(gpus - gd, receivers(self.prep.cm, d.cand.grid),
                                               deadline, should_stop)
            if not ok:
                return outcome
            if p is not None and p.ttft_ns < best.prefill.ttft_ns:
                best = Pair(d, p)
        outcome.pair = best
        outcome.proved += ["most output tokens/s per GPU", "lowest TTFT"]
        return outcome


# ----------------------------------------------------------------------------------------------
# The pair as a plan
# ----------------------------------------------------------------------------------------------


def _placement(prep: Prepared, placements: Placements, ep: int, red: int):
    if not prep.moe_layers:
        return None
    return tuple(LayerPlacement(layer=layer, ranks=ranks)
                 for layer, ranks in placements.ranks(ep, red).items())


def plan_of(prep: Prepared, placements: Placements, p: Pair) -> DisaggPlan:
    d, c = p.decode, p.decode.cand
    decode = Plan(
        degrees=c.grid.degrees(d.replicas), batch=c.batch(d.q),
        redundant_experts=c.redundant if prep.moe_layers else None,
        stages=tuple(Stage(first_layer=a, last_layer=b) for a, b in bounds_of(c, list(d.cuts))),
        placement=_placement(prep, placements, c.grid.ep, c.redundant))
    pc = p.prefill.cand
    edges = [*p.prefill.cuts, pc.num_layers]
    prefill = PrefillPlan(
        degrees=pc.grid.degrees(p.prefill.replicas), tokens_per_step=pc.tokens,
        redundant_experts=pc.gc.redundant if prep.moe_layers else None,
        stages=tuple(Stage(first_layer=edges[k], last_layer=edges[k + 1] - 1)
                     for k in range(pc.pp)),
        placement=_placement(prep, placements, pc.grid.ep, pc.gc.redundant))
    return DisaggPlan(prefill=prefill, decode=decode)
