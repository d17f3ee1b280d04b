"""Expert placement per (ep, redundant slots, MoE layer), solved lazily by the placement
sub-model (:mod:`solver.placement`) and cached; layers whose loads are permutations of each other
share one solve.

Budgets are deterministic: the heuristic is bounded by rounds, CP-SAT (only on exact models, the
ones it can prove; one worker) by :data:`solver.placement.PLANNER_DETERMINISTIC_S`
deterministic seconds, so an instance gets the same placements on a busy and an idle machine.
Only the solve's deadline can cut one short (then the answer is not OPTIMAL anyway, and
``clock_free`` says so)."""

from __future__ import annotations

import numpy as np

from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.loads import LOAD_RESOLUTION
from solver.placement import (
    PLANNER_DETERMINISTIC_S,
    PLANNER_PLACEMENT_WORKERS,
    PlacementResult,
    place_experts_cached,
)
from solver.schema import LayerExperts


class Placements:
    def __init__(self, prep: Prepared, workers: int, seed: int, deadline: float):
        self.prep = prep
        self.workers = workers
        self.seed = seed
        self.deadline = deadline
        self._by_ep: dict[tuple[int, int], dict[int, PlacementResult]] = {}
        self._memo: dict = {}  # this solve's placements, cut short or not

    def results(self, ep: int, redundant: int) -> dict[int, PlacementResult]:
        key = (ep, redundant)
        if key not in self._by_ep:
            prep = self.prep
            self._by_ep[key] = {
                layer: place_experts_cached(
                    prep.loads[prep.moe_index[layer]], ep, redundant,
                    time_limit_s=PLANNER_DETERMINISTIC_S, workers=PLANNER_PLACEMENT_WORKERS,
                    seed=self.seed, polish_restricted=False, deadline=self.deadline,
                    memo=self._memo)
                for layer in prep.moe_layers}
        return self._by_ep[key]

    def hot(self, ep: int, redundant: int, *, lower: bool = False) -> dict[int, HotRank]:
        """``layer -> HotRank``; with ``lower`` the proved lower bound on the busiest rank's load
        instead of the placement's (for a valid GPU lower bound)."""
        slots = (self.prep.model.num_experts + redundant) // ep
        return {layer: HotRank(r.lower_bound if lower else r.hottest, slots)
                for layer, r in self.results(ep, redundant).items()}

    def all_optimal(self, ep: int, redundant: int) -> bool:
        return all(r.hottest == r.lower_bound for r in self.results(ep, redundant).values())

    def clock_free(self) -> bool:
        """No placement used so far was cut short by the deadline."""
        return all(r.clock_free for by_layer in self._by_ep.values() for r in by_layer.values())

    def ranks(self, ep: int, redundant: int) -> dict[int, tuple[tuple[int, ...], ...]]:
        return {layer: r.ranks for layer, r in self.results(ep, redundant).items()}

    def experts(self, ep: int, redundant: int) -> tuple[LayerExperts, ...]:
        """Per MoE layer the placement figures of ``(ep, redundant)`` (an answer's
        ``experts``)."""
        out = []
        for layer, r in self.results(ep, redundant).items():
            counts = np.bincount([e for rank in r.ranks for e in rank],
                                 minlength=self.prep.model.num_experts)
            out.append(LayerExperts(
                layer=layer, hottest_load=r.hottest / LOAD_RESOLUTION,
                greedy_hottest_load=r.greedy_hottest / LOAD_RESOLUTION,
                lower_bound=r.lower_bound / LOAD_RESOLUTION, optimal=r.hottest == r.lower_bound,
                replicated_experts=int((counts > 1).sum())))
        return tuple(out)
