"""The placement users run today: DeepSeek's EPLB *global* policy, as a baseline.

Written from the published description of the policy (replicate the experts with the largest
load per replica, then pack replicas longest-processing-time first onto ranks with equal slot
counts), not from its code, with moeplan's one extra rule: a rank never holds the same expert
twice (the copy would spend a slot's memory on weights the GPU already has; ``solver.verify``
rejects it), so an expert has at most ``ep`` replicas.

Loads are integers in load units (:mod:`solver.loads`). A replica of an expert with load ``l``
and ``n`` replicas carries ``ceil(l / n)`` units: everything stays an integer, and the rounding
can only overstate a rank's load (by less than one unit per replica), never understate it. The
CP-SAT placement (:mod:`solver.placement`) uses the same convention, so the two are compared on
the same numbers. See docs/placement.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.schema import ceil_div


@dataclass(frozen=True)
class GreedyResult:
    """A placement of one MoE layer on ``ep`` ranks and the loads it gives."""

    ranks: tuple[tuple[int, ...], ...]  # ranks[r] = experts in rank r's slots
    replicas: np.ndarray  # replicas[e] = replica count of expert e
    rank_loads: np.ndarray  # rank_loads[r] = load units of rank r
    hottest: int  # max(rank_loads)


def check_placement_input(loads: np.ndarray, ep: int, redundant: int) -> np.ndarray:
    """Validate ``(loads, ep, redundant)`` and return the loads as a 1-D int64 array.

    Raises ValueError naming the rule that is broken.
    """
    array = np.asarray(loads)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("loads must be a non-empty 1-D array (one load per expert)")
    if array.dtype.kind not in "iuf" or (
        array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.floor(array)))
    ):
        raise ValueError("loads must be integers (load units)")
    if np.any(array < 0):
        raise ValueError("loads must be non-negative")
    if ep < 1:
        raise ValueError(f"ep must be >= 1, got {ep}")
    if redundant < 0:
        raise ValueError(f"redundant must be >= 0, got {redundant}")
    slots = array.size + redundant
    if slots % ep:
        raise ValueError(
            f"ep ({ep}) must divide the routed experts plus redundant slots "
            f"({array.size} + {redundant} = {slots})"
        )
    if slots // ep > array.size:
        raise ValueError(
            f"slots per rank ({slots} / {ep} = {slots // ep}) cannot exceed the routed experts "
            f"({array.size}): a rank never holds the same expert twice, so redundant slots must "
            f"be at most experts × (ep - 1) = {array.size * (ep - 1)}"
        )
    return array.astype(np.int64)


def replica_load(load: int, replicas: int) -> int:
    """Load units one replica carries: ``ceil(load / replicas)`` (conservative, integer)."""
    return ceil_div(int(load), int(replicas))


def water_fill_replicas(
    loads: np.ndarray, redundant: int, max_replicas: int | None = None
) -> np.ndarray:
    """EPLB step (a): one replica each, then each redundant slot to the expert with the largest
    load per replica ``load / replicas`` (compared exactly; ties to the lower expert index) among
    those with fewer than ``max_replicas`` (no cap when None)."""
    replicas = np.ones(len(loads), dtype=np.int64)
    values = [int(x) for x in loads]
    cap = max_replicas if max_replicas is not None else redundant + 1
    for _ in range(redundant):
        best = -1
        for e in range(len(values)):
            if replicas[e] >= cap:
                continue
            # values[e] / replicas[e] > values[best] / replicas[best], in exact integers.
            if best < 0 or values[e] * int(replicas[best]) > values[best] * int(replicas[e]):
                best = e
        if best < 0:
            raise ValueError(f"{redundant} redundant slots do not fit under {cap} replicas each")
        replicas[best] += 1
    return replicas


def lpt_pack(
    per_replica: list[tuple[int, int]], ep: int, slots_per_rank: int
) -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """EPLB step (b): longest processing time first with equal slot counts.

    ``per_replica`` lists ``(expert, load)`` of every replica (at most ``ep`` per expert).
    Replicas go in descending load (ties: lower expert first) to the least-loaded rank that
    still has a free slot and does not hold the expert yet (ties: lower rank). Returns the
    experts of each rank and the rank loads.

    If every rank with a free slot already holds the expert, a repair keeps the rule: take a
    full rank ``b`` without the expert and move one of its replicas, of an expert the open rank
    ``a`` lacks, to ``a`` (one exists: ``b`` holds more distinct experts than ``a``), then put
    the new replica on ``b``. Of those moves, the one leaving the larger of the two loads
    smallest is taken.
    """
    ranks: list[list[int]] = [[] for _ in range(ep)]
    loads_of: list[list[int]] = [[] for _ in range(ep)]
    rank_loads = np.zeros(ep, dtype=np.int64)
    for expert, load in sorted(per_replica, key=lambda item: (-item[1], item[0])):
        open_ranks = [r for r in range(ep) if len(ranks[r]) < slots_per_rank]
        allowed = [r for r in open_ranks if expert not in ranks[r]]
        if allowed:
            target = min(allowed, key=lambda r: (rank_loads[r], r))
        else:
            moves = [
                (max(rank_loads[a] + moved, rank_loads[b] - moved + load), a, b, i)
                for a in open_ranks
                for b in range(ep)
                if expert not in ranks[b]
                for i, (other, moved) in enumerate(zip(ranks[b], loads_of[b], strict=True))
                if other not in ranks[a]
            ]
            _, a, b, i = min(moves)
            other, moved = ranks[b].pop(i), loads_of[b].pop(i)
            ranks[a].append(other)
            loads_of[a].append(moved)
            rank_loads[a] += moved
            rank_loads[b] -= moved
            target = b
        ranks[target].append(expert)
        loads_of[target].append(load)
        rank_loads[target] += load
    return tuple(tuple(r) for r in ranks), rank_loads


def greedy_placement(loads: np.ndarray, ep: int, redundant: int) -> GreedyResult:
    """DeepSeek EPLB's global policy on one layer: water-filling replication (at most ``ep``
    replicas per expert), then LPT packing (never two replicas of an expert on one rank).

    ``ep`` must divide ``len(loads) + redundant``; every rank gets the same number of slots,
    at most ``len(loads)``.
    """
    values = check_placement_input(loads, ep, redundant)
    slots_per_rank = (len(values) + redundant) // ep
    replicas = water_fill_replicas(values, redundant, max_replicas=ep)
    per_replica = [
        (e, replica_load(values[e], replicas[e]))
        for e in range(len(values))
        for _ in range(int(replicas[e]))
    ]
    ranks, rank_loads = lpt_pack(per_replica, ep, slots_per_rank)
    return GreedyResult(
        ranks=ranks, replicas=replicas, rank_loads=rank_loads, hottest=int(rank_loads.max())
    )
