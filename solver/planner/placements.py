"""Expert placement per (ep, redundant slots, MoE layer), solved lazily by the placement
sub-model (:mod:`solver.placement`) and cached; layers whose loads are permutations of each other
share one solve."""

from __future__ import annotations

from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.placement import PlacementResult, place_experts_cached


class Placements:
    def __init__(self, prep: Prepared, time_limit_s: float, workers: int, seed: int):
        self.prep = prep
        self.time_limit_s = time_limit_s
        self.workers = workers
        self.seed = seed
        self._by_ep: dict[tuple[int, int], dict[int, PlacementResult]] = {}

    def results(self, ep: int, redundant: int) -> dict[int, PlacementResult]:
        key = (ep, redundant)
        if key not in self._by_ep:
            prep = self.prep
            self._by_ep[key] = {
                layer: place_experts_cached(
                    prep.loads[prep.moe_index[layer]], ep, redundant,
                    time_limit_s=self.time_limit_s, workers=self.workers, seed=self.seed)
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

    def ranks(self, ep: int, redundant: int) -> dict[int, tuple[tuple[int, ...], ...]]:
        return {layer: r.ranks for layer, r in self.results(ep, redundant).items()}
