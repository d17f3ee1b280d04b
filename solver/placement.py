"""CP-SAT placement of one MoE layer's experts on ``ep`` expert-parallel ranks.

Given integer expert loads (:mod:`solver.loads`), ``ep`` ranks with ``(E + redundant) / ep`` slots
each, choose how many replicas each expert gets and which rank each replica sits on, to minimise
the hottest rank's load. A replica of an expert with load ``l`` and ``n`` replicas carries
``ceil(l / n)`` load units, the convention of :mod:`solver.baselines`, whose greedy (DeepSeek
EPLB's global policy) is the warm start and the upper bound. The model, the lower bound and its
proof, and measured solve times are in docs/placement.md.

Experts are renumbered by descending load before anything else (stable, so ties keep index order):
the model only ever sees sorted loads, so layers whose loads are permutations of each other build
the same model, get the same answer, and :func:`place_experts_cached` solves each multiset once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from solver.baselines import (
    GreedyResult,
    check_placement_input,
    greedy_placement,
    lpt_pack,
    replica_load,
)
from solver.schema import ceil_div

log = logging.getLogger(__name__)

#: Largest experts × replica-count choices × ranks for which every expert may take every replica
#: count 1..min(1 + redundant, ep). Up to this size the model is exact: its bound and OPTIMAL
#: status hold for all placements. Above it only the experts that could plausibly benefit get
#: choices > 1 (see :func:`replica_count_choices`), which keeps DeepSeek-V3-sized layers solvable
#: in about a second.
EXACT_MODEL_BUDGET = 4096

#: Largest (replica pairs of a rank)² × (other ranks) for which the local search tries exchanging
#: two replicas at once; above it only single exchanges (the pair search would cost seconds).
PAIR_SWAP_BUDGET = 4_000_000

#: Replica-count vectors the heuristic packs (caps between the least max replica and the bound).
REPLICA_CAPS = 9

#: Replicas per rank that one exact many-for-many exchange pools (2 × this many in all; the
#: meet in the middle enumerates the 2**this subsets of each half of the pool).
EXCHANGE_WIDTH = 12

#: Exact exchanges tried on the heuristic's best packing, stopped early by the bound, a dead end
#: or half the time limit.
EXCHANGE_ROUNDS = 400

#: Extra replica counts, above the largest known, offered to each candidate expert (large model).
EXTRA_REPLICA_CHOICES = 2


@dataclass(frozen=True)
class PlacementResult:
    """The placement of one MoE layer and how good it is. Loads are in load units."""

    ranks: tuple[tuple[int, ...], ...]  # ranks[r] = experts in rank r's slots (one per slot)
    hottest: int  # max rank load of this placement
    lower_bound: int  # proved lower bound on the hottest rank of any placement of these loads
    # The greedy baseline's hottest rank on the same loads, with the experts numbered in
    # descending load (stable): EPLB's greedy breaks ties by expert number, so on loads with
    # ties another numbering of the same multiset can come out a unit apart. moeplan's EPLB
    # baseline is this numbering everywhere (verify and estimate too), so every plan's figure
    # depends on the load multiset only.
    greedy_hottest: int
    optimal: bool  # hottest == lower_bound, or CP-SAT proved OPTIMAL on an exact model
    status: str  # CP-SAT status name, or "TRIVIAL" when no model was needed
    exact_model: bool = True  # every expert could take every replica count (see docs)
    wall_time_s: float = field(default=0.0, compare=False)  # of the solve (cached: the first)
    clock_free: bool = field(default=True, compare=False)  # no wall-clock limit cut it short


# ----------------------------------------------------------------------------------------------
# Loads of a placement and lower bounds
# ----------------------------------------------------------------------------------------------


def replica_counts(num_experts: int, ranks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """How many slots hold each expert."""
    counts = np.zeros(num_experts, dtype=np.int64)
    for experts in ranks:
        for e in experts:
            counts[e] += 1
    return counts


def rank_loads_of(loads: np.ndarray, ranks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Recompute every rank's load from a placement: an expert found on ``n`` slots carries
    ``ceil(load / n)`` on each of them."""
    replicas = replica_counts(len(loads), ranks)
    return np.array(
        [sum(replica_load(loads[e], replicas[e]) for e in experts) for experts in ranks],
        dtype=np.int64,
    )


def replicas_needed(loads: np.ndarray, max_replica_load: int) -> np.ndarray:
    """Fewest replicas of each expert that keep its per-replica load ``ceil(l / n)`` at most
    ``max_replica_load`` (> 0): ``max(1, ceil(l / t))``, because ``ceil(l/n) <= t`` iff
    ``n >= l / t`` for integer ``t``."""
    return np.maximum(1, -(-loads // max_replica_load))


def min_max_replica_load(loads: np.ndarray, slots: int, max_replicas: int) -> int:
    """Smallest possible maximum per-replica load with ``slots`` replicas in total and at most
    ``max_replicas`` (= ep: one per rank) per expert: the least ``t`` with
    ``replicas_needed(loads, t)`` at most ``max_replicas`` each and at most ``slots`` in all
    (binary search; the need only falls as ``t`` grows). Water-filling replication attains it
    (docs/placement.md)."""
    if int(loads.max()) == 0:
        return 0
    low = max(1, ceil_div(int(loads.max()), max_replicas))
    high = int(loads.max())  # always feasible: one replica each
    while low < high:
        mid = (low + high) // 2
        if replicas_needed(loads, mid).sum() <= slots:
            high = mid
        else:
            low = mid + 1
    return low


#: Largest experts × (extra replicas + 1)² for which the replicated-total DP below runs.
DP_BUDGET = 20_000_000


def least_replicated_total(
    loads: np.ndarray, slots: int, max_replica_load: int, max_replicas: int
) -> tuple[int, np.ndarray] | None:
    """The least total replicated load ``sum(n_e * ceil(l_e / n_e))`` over replica counts with
    ``sum(n_e) == slots``, ``1 <= n_e <= max_replicas`` and every per-replica load at most
    ``max_replica_load``, and counts attaining it; None if no counts qualify.

    Exact dynamic programme over experts and extra replicas (above the fewest needed). When it
    would be too large (DP_BUDGET) it returns ``sum(loads)``, a lower bound on the least total,
    with the fewest counts needed (which then may not sum to ``slots``; callers check).
    """
    if max_replica_load <= 0:
        return (0, np.ones(len(loads), dtype=np.int64)) if int(loads.max()) == 0 else None
    fewest = replicas_needed(loads, max_replica_load)
    extra = slots - int(fewest.sum())
    if extra < 0 or int(fewest.max()) > max_replicas:
        return None
    if len(loads) * (extra + 1) ** 2 > DP_BUDGET:
        return int(loads.sum()), fewest
    never = np.iinfo(np.int64).max // 4
    steps = np.arange(extra + 1)
    # best[k]: least replicated total of the experts seen so far using k extra replicas.
    best = np.full(extra + 1, never, dtype=np.int64)
    best[0] = 0
    taken = np.zeros((len(loads), extra + 1), dtype=np.int64)  # extra replicas given to e
    # (k, j): k extra replicas used so far, j of them by this expert; valid when j <= k.
    valid = steps[:, None] >= steps[None, :]
    before = np.where(valid, steps[:, None] - steps[None, :], 0)
    for e, load in enumerate(loads):
        counts = fewest[e] + steps
        cost = np.where(counts <= max_replicas, counts * -(-int(load) // counts), never)
        options = np.where(valid, best[before] + cost[None, :], never)
        taken[e] = options.argmin(axis=1)
        best = options.min(axis=1)
    if best[extra] >= never:
        return None
    counts = fewest.copy()
    k = extra
    for e in range(len(loads) - 1, -1, -1):
        counts[e] += taken[e, k]
        k -= taken[e, k]
    return int(best[extra]), counts


def _fits(loads: np.ndarray, ep: int, slots: int, target: int) -> bool:
    """Necessary condition for a placement with hottest rank <= target: some replica counts (at
    most ep each) keep every replica at most ``target`` and the replicated total at most
    ``ep * target``."""
    least = least_replicated_total(loads, slots, target, ep)
    return least is not None and least[0] <= ep * target


def pigeonhole_bound(loads: np.ndarray, ep: int) -> int:
    """Lower bound for one replica per expert (no redundant slots), ``S = E`` items on ``ep`` ranks
    of ``s = S / ep`` slots: among the ``j·ep + 1`` heaviest items some rank holds ``j + 1``, so
    that rank carries at least the ``j + 1`` lightest of them plus the ``s - j - 1`` lightest items
    overall (disjoint from them). ``j = 0``: the heaviest item plus the ``s - 1`` lightest."""
    items = np.sort(loads)[::-1]
    slots_per_rank = len(items) // ep
    prefix = np.concatenate([[0], np.cumsum(items)])
    best = 0
    for j in range(slots_per_rank):
        top = j * ep + 1
        heavy = prefix[top] - prefix[top - j - 1]  # items[top - j - 1 : top]
        light = prefix[len(items)] - prefix[len(items) - (slots_per_rank - j - 1)]
        best = max(best, int(heavy + light))
    return best


def analytic_lower_bound(loads: np.ndarray, ep: int, redundant: int, upper: int) -> int:
    """A lower bound on the hottest rank of every placement (docs/placement.md):

    - the least ``t`` for which replica counts exist with every replica ``<= t`` and a replicated
      total ``<= ep · t``, at most ``ep`` replicas per expert (binary search up to ``upper``, a
      known placement's hottest); this is at least ``max(ceil(total / ep), min_max_replica_load)``;
    - without redundant slots, also the pigeonhole bound.
    """
    slots = len(loads) + redundant
    low = max(ceil_div(int(loads.sum()), ep), min_max_replica_load(loads, slots, ep))
    high = max(low, upper)
    while low < high:
        mid = (low + high) // 2
        if _fits(loads, ep, slots, mid):
            high = mid
        else:
            low = mid + 1
    if redundant == 0:
        low = max(low, pigeonhole_bound(loads, ep))
    return low


# ----------------------------------------------------------------------------------------------
# Heuristic: better replica counts, LPT, then exchanges
# ----------------------------------------------------------------------------------------------


def _holds(experts: np.ndarray, rank_of: np.ndarray, ep: int) -> np.ndarray:
    """``holds[r, e]``: rank r holds a replica of expert e."""
    holds = np.zeros((ep, int(experts.max()) + 1), dtype=bool)
    holds[rank_of, experts] = True
    return holds


def _best_swap(
    weights: np.ndarray,
    experts: np.ndarray,
    rank_of: np.ndarray,
    rank_load: np.ndarray,
    holds: np.ndarray,
    hot: int,
    group: int,
) -> tuple[int, list[int], list[int]] | None:
    """The best exchange of ``group`` replicas of the hot rank for as many lighter ones of another
    rank that keeps the other rank below the peak and no rank holding an expert twice:
    ``(score, hot replicas, other replicas)``, score = the larger of the two new loads (smaller
    is better), or None."""
    peak = int(rank_load[hot])
    inside = np.flatnonzero(rank_of == hot)
    never = np.iinfo(np.int64).max
    best: tuple[int, list[int], list[int]] | None = None
    if group == 1:
        outside = np.flatnonzero(rank_of != hot)
        gain = weights[inside][:, None] - weights[outside][None, :]
        other = rank_load[rank_of[outside]][None, :] + gain
        distinct = (
            ~holds[hot, experts[outside]][None, :]
            & ~holds[rank_of[outside][None, :], experts[inside][:, None]]
        )
        allowed = (gain > 0) & (other < peak) & distinct
        if allowed.any():
            score = np.where(allowed, np.maximum(peak - gain, other), never)
            a, b = np.unravel_index(int(np.argmin(score)), score.shape)
            best = (int(score[a, b]), [int(inside[a])], [int(outside[b])])
        return best
    first, second = np.triu_indices(len(inside), k=1)
    hot_pairs = weights[inside[first]] + weights[inside[second]]
    for r in range(len(rank_load)):
        if r == hot:
            continue
        members = np.flatnonzero(rank_of == r)
        if len(members) < 2:
            continue
        p, q = np.triu_indices(len(members), k=1)
        gain = hot_pairs[:, None] - (weights[members[p]] + weights[members[q]])[None, :]
        other = rank_load[r] + gain
        hot_pair_fits = ~holds[r, experts[inside[first]]] & ~holds[r, experts[inside[second]]]
        pair_fits_hot = ~holds[hot, experts[members[p]]] & ~holds[hot, experts[members[q]]]
        allowed = (gain > 0) & (other < peak) & hot_pair_fits[:, None] & pair_fits_hot[None, :]
        if not allowed.any():
            continue
        score = np.where(allowed, np.maximum(peak - gain, other), never)
        a, b = np.unravel_index(int(np.argmin(score)), score.shape)
        if best is None or score[a, b] < best[0]:
            best = (
                int(score[a, b]),
                [int(inside[first[a]]), int(inside[second[a]])],
                [int(members[p[b]]), int(members[q[b]])],
            )
    return best


def _descend(
    weights: np.ndarray,
    experts: np.ndarray,
    rank_of: np.ndarray,
    rank_load: np.ndarray,
    holds: np.ndarray,
    deadline: float,
) -> None:
    """Exchange replicas of the hottest rank with lighter ones elsewhere, in place, until no
    single (or, when affordable, pair) exchange lowers (peak, ranks at peak)."""
    ep = len(rank_load)
    slots_per_rank = len(weights) // ep
    pairs = slots_per_rank * (slots_per_rank - 1) // 2
    try_pairs = pairs * pairs * (ep - 1) <= PAIR_SWAP_BUDGET
    while time.monotonic() < deadline:
        hot = int(np.argmax(rank_load))
        swap = _best_swap(weights, experts, rank_of, rank_load, holds, hot, 1)
        if swap is None and try_pairs:
            swap = _best_swap(weights, experts, rank_of, rank_load, holds, hot, 2)
        if swap is None:
            return
        _, give, take = swap
        other = int(rank_of[take[0]])
        moved = int(weights[give].sum() - weights[take].sum())
        rank_load[hot] -= moved
        rank_load[other] += moved
        holds[hot, experts[give]] = False
        holds[other, experts[take]] = False
        rank_of[give] = other
        rank_of[take] = hot
        holds[other, experts[give]] = True
        holds[hot, experts[take]] = True


def _subset_sums(items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every subset of ``items`` (at most ~12): its bit mask, size and sum."""
    masks = np.arange(1 << len(items), dtype=np.int64)
    bits = (masks[:, None] >> np.arange(len(items))) & 1
    return masks, bits.sum(axis=1), bits @ items


def _best_exchange(
    hot_items: np.ndarray, other_items: np.ndarray, hot_rest: int, other_rest: int
) -> tuple[int, np.ndarray] | None:
    """Redistribute ``hot_items`` ∪ ``other_items`` (w each) so each side again gets w of them,
    minimising the larger side load (``rest`` + chosen items). Meet in the middle: subsets of
    each half, matched by size and sorted sum. Returns (new larger load, which of the pooled
    items go to the hot side) or None if no split beats the current one."""
    pool = np.concatenate([hot_items, other_items])
    width, total = len(hot_items), int(pool.sum())
    current = max(hot_rest + int(hot_items.sum()), other_rest + int(other_items.sum()))
    # Hot side sum s: larger load max(hot_rest + s, other_rest + total - s), best near `ideal`.
    ideal = (other_rest + total - hot_rest) // 2
    half = len(pool) // 2
    masks_a, sizes_a, sums_a = _subset_sums(pool[:half])
    masks_b, sizes_b, sums_b = _subset_sums(pool[half:])
    best: tuple[int, int, int] | None = None
    for size in range(max(0, width - (len(pool) - half)), min(width, half) + 1):
        in_a = np.flatnonzero(sizes_a == size)
        in_b = np.flatnonzero(sizes_b == width - size)
        if in_a.size == 0 or in_b.size == 0:
            continue
        in_b = in_b[np.argsort(sums_b[in_b], kind="stable")]
        sorted_b = sums_b[in_b]
        below = np.searchsorted(sorted_b, ideal - sums_a[in_a], side="right") - 1
        for pick in (np.clip(below, 0, len(in_b) - 1), np.clip(below + 1, 0, len(in_b) - 1)):
            chosen = sums_a[in_a] + sorted_b[pick]
            larger = np.maximum(hot_rest + chosen, other_rest + total - chosen)
            i = int(np.argmin(larger))
            if best is None or larger[i] < best[0]:
                best = (int(larger[i]), int(masks_a[in_a[i]]), int(masks_b[in_b[pick[i]]]))
    if best is None or best[0] >= current:
        return None
    to_hot = np.concatenate(
        [(best[1] >> np.arange(half)) & 1, (best[2] >> np.arange(len(pool) - half)) & 1]
    ).astype(bool)
    return best[0], to_hot


def _repartition(
    weights: np.ndarray,
    experts: np.ndarray,
    rank_of: np.ndarray,
    rank_load: np.ndarray,
    holds: np.ndarray,
    rng: np.random.Generator,
) -> bool:
    """Exchange any number of replicas between the hottest rank and another, solved exactly;
    apply the first exchange, lightest partner first, that lowers the pair below the peak. In
    place; True if one was applied. Only replicas of experts the other rank lacks take part (up
    to EXCHANGE_WIDTH from each rank, drawn at random when there are more), so no split can put
    an expert twice on a rank."""
    hot = int(np.argmax(rank_load))
    peak = int(rank_load[hot])
    hot_members = np.flatnonzero(rank_of == hot)
    for other in np.argsort(rank_load, kind="stable"):
        if other == hot or rank_load[other] >= peak:
            continue
        other_members = np.flatnonzero(rank_of == other)
        movable_hot = hot_members[~holds[other, experts[hot_members]]]
        movable_other = other_members[~holds[hot, experts[other_members]]]
        width = min(EXCHANGE_WIDTH, len(movable_hot), len(movable_other))
        if width == 0:
            continue
        mine = rng.choice(movable_hot, size=width, replace=False)
        theirs = rng.choice(movable_other, size=width, replace=False)
        found = _best_exchange(
            weights[mine],
            weights[theirs],
            peak - int(weights[mine].sum()),
            int(rank_load[other]) - int(weights[theirs].sum()),
        )
        if found is None:
            continue
        pool = np.concatenate([mine, theirs])
        holds[[hot, other]] = False
        rank_of[pool[found[1]]] = hot
        rank_of[pool[~found[1]]] = other
        for r in (hot, other):
            members = rank_of == r
            rank_load[r] = weights[members].sum()
            holds[r, experts[members]] = True
        return True
    return False


def improve_by_swaps(
    weights: np.ndarray,
    experts: np.ndarray,
    rank_of: np.ndarray,
    ep: int,
    deadline: float = math.inf,
    *,
    rounds: int = 0,
    seed: int = 0,
    target: int = 0,
) -> np.ndarray:
    """Local search on a packing of replicas (``weights[i]`` of expert ``experts[i]`` on rank
    ``rank_of[i]``); slot counts are unchanged and no rank ever holds an expert twice (if it did
    not before). Descent: repeatedly exchange one replica (or, when no single exchange helps,
    two) of the hottest rank for lighter ones of another rank, choosing the exchange that leaves
    the pair's larger load smallest, while the other rank stays below the current peak; each
    exchange lowers (peak, ranks at peak) lexicographically, so descent terminates. Then up to
    ``rounds`` exact many-for-many exchanges (:func:`_repartition`), each followed by descent.
    Stops at ``deadline`` (a ``time.monotonic()`` value) or when the peak reaches ``target``."""
    rank_of = rank_of.copy()
    rank_load = np.zeros(ep, dtype=np.int64)
    np.add.at(rank_load, rank_of, weights)
    holds = _holds(experts, rank_of, ep)
    _descend(weights, experts, rank_of, rank_load, holds, deadline)
    rng = np.random.default_rng(seed)
    stuck = 0
    for _ in range(rounds):
        if time.monotonic() >= deadline or int(rank_load.max()) <= target:
            break
        if _repartition(weights, experts, rank_of, rank_load, holds, rng):
            stuck = 0
            _descend(weights, experts, rank_of, rank_load, holds, deadline)
        else:
            stuck += 1
            # With whole ranks in the exchange the search is exhaustive: one miss is final.
            if len(weights) // ep <= EXCHANGE_WIDTH or stuck >= 8:
                break
    return rank_of


def pack(
    loads: np.ndarray,
    replicas: np.ndarray,
    ep: int,
    deadline: float = math.inf,
    *,
    rounds: int = 0,
    seed: int = 0,
    target: int = 0,
) -> tuple[tuple[int, ...], ...]:
    """LPT packing of the replicas (as the greedy does), then :func:`improve_by_swaps`."""
    slots_per_rank = int(replicas.sum()) // ep
    per_replica = [
        (e, replica_load(loads[e], replicas[e]))
        for e in range(len(loads))
        for _ in range(int(replicas[e]))
    ]
    ranks, _ = lpt_pack(per_replica, ep, slots_per_rank)
    experts = np.array([e for r in ranks for e in r], dtype=np.int64)
    weights = np.array([replica_load(loads[e], replicas[e]) for e in experts], dtype=np.int64)
    rank_of = np.repeat(np.arange(ep), slots_per_rank)
    rank_of = improve_by_swaps(
        weights, experts, rank_of, ep, deadline, rounds=rounds, seed=seed, target=target
    )
    return tuple(tuple(sorted(experts[rank_of == r].tolist())) for r in range(ep))


def heuristic_placement(
    loads: np.ndarray,
    ep: int,
    redundant: int,
    greedy: GreedyResult,
    lower_bound: int,
    deadline: float = math.inf,
    seed: int = 0,
) -> tuple[tuple[int, ...], ...]:
    """The best of a few packings, never worse than the greedy. Replica counts tried: the
    greedy's, and the least-replicated-total counts whose per-replica loads stay under caps from
    the least possible maximum up to the lower bound (small replicas pack well; a small total
    leaves room under the bound). Each is packed by LPT and improved by descent; the best then
    gets exact many-for-many exchanges (EXCHANGE_ROUNDS) until the bound or the deadline."""
    slots = len(loads) + redundant
    candidates = [greedy.replicas]
    if redundant:
        least_max = min_max_replica_load(loads, slots, ep)
        caps = np.linspace(least_max, max(least_max, lower_bound), REPLICA_CAPS)
        for cap in np.unique(caps.astype(np.int64)):
            least = least_replicated_total(loads, slots, int(cap), ep)
            if least is not None and int(least[1].sum()) == slots:
                candidates.append(least[1])
    best, best_hottest, best_replicas = greedy.ranks, greedy.hottest, greedy.replicas
    seen: set[tuple[int, ...]] = set()
    for replicas in candidates:
        if tuple(replicas) in seen or time.monotonic() >= deadline:
            continue
        seen.add(tuple(replicas))
        ranks = pack(loads, replicas, ep, deadline)
        hottest = int(rank_loads_of(loads, ranks).max())
        if hottest < best_hottest:
            best, best_hottest, best_replicas = ranks, hottest, replicas
        if best_hottest == lower_bound:
            return best
    ranks = pack(
        loads, best_replicas, ep, deadline, rounds=EXCHANGE_ROUNDS, seed=seed, target=lower_bound
    )
    if int(rank_loads_of(loads, ranks).max()) < best_hottest:
        best = ranks
    return best


# ----------------------------------------------------------------------------------------------
# The CP-SAT model
# ----------------------------------------------------------------------------------------------


def replica_count_choices(
    loads: np.ndarray, ep: int, redundant: int, known: list[np.ndarray]
) -> tuple[dict[int, list[int]], bool]:
    """Replica counts each expert may take, and whether that choice is unrestricted (exact).

    ``loads`` are sorted descending; ``known`` are replica counts of placements that will be
    hinted. No expert has more than ``ep`` replicas (one per rank) or ``1 + redundant``. Exact
    when small: every expert may take every count up to that. Otherwise the candidates are the
    top ``redundant`` experts and every expert a known placement replicates; each may take
    1 .. (largest known count + EXTRA_REPLICA_CHOICES), capped the same way. Everyone else has
    exactly one replica.
    """
    num_experts = len(loads)
    most_replicas = min(redundant + 1, ep)  # one replica per rank at most
    if redundant == 0:
        return {e: [1] for e in range(num_experts)}, True
    if num_experts * most_replicas * ep <= EXACT_MODEL_BUDGET:
        return {e: list(range(1, most_replicas + 1)) for e in range(num_experts)}, True
    most_known = np.max(np.stack(known), axis=0)
    candidates = set(range(min(redundant, num_experts))) | set(
        np.flatnonzero(most_known > 1).tolist()
    )
    choices = {}
    for e in range(num_experts):
        if e in candidates:
            most = min(most_replicas, int(most_known[e]) + EXTRA_REPLICA_CHOICES)
            choices[e] = list(range(1, most + 1))
        else:
            choices[e] = [1]
    return choices, False


class PlacementModel:
    """The decision variables of one layer's placement and the rules they obey.

    Variables (experts are indices into the loads, sorted descending):
      - ``uses[e, n]``: expert e has exactly n replicas (only for experts with several choices);
      - ``on_rank[e, n, r]``: e has n replicas and one of them sits on rank r (a rank never
        holds an expert twice);
      - ``rank_load[r]``: load units on rank r, and ``hottest`` >= every rank load: the objective.
    """

    def __init__(
        self,
        loads: np.ndarray,
        ep: int,
        redundant: int,
        choices: dict[int, list[int]],
        lower_bound: int,
        upper_bound: int,
    ) -> None:
        self.loads = loads
        self.ep = ep
        self.slots_per_rank = (len(loads) + redundant) // ep
        self.choices = choices
        self.model = cp_model.CpModel()
        self.uses: dict[tuple[int, int], cp_model.IntVar] = {}
        self.on_rank: dict[tuple[int, int, int], cp_model.IntVar] = {}
        self.rank_load: dict[int, cp_model.IntVar] = {}
        # Never worse than the greedy (upper_bound), never better than the proved lower bound.
        self.hottest = self.model.new_int_var(lower_bound, upper_bound, "hottest")
        self._add_replica_counts(len(loads) + redundant)
        self._add_rank_slots()
        self._add_rank_loads(upper_bound)
        self._break_rank_symmetry()
        self.model.minimize(self.hottest)

    def replica_load(self, e: int, n: int) -> int:
        return replica_load(self.loads[e], n)

    def on_rank_of(self, r: int) -> list[tuple[int, int, cp_model.IntVar]]:
        """``(expert, count, var)`` of every variable that puts replicas on rank r."""
        return [(e, n, self.on_rank[e, n, r]) for e, counts in self.choices.items() for n in counts]

    def _add_replica_counts(self, slots: int) -> None:
        """Each expert has exactly one replica count, and that many replicas on the ranks."""
        m, ranks = self.model, range(self.ep)
        for e, counts in self.choices.items():
            if len(counts) > 1:
                for n in counts:
                    self.uses[e, n] = m.new_bool_var(f"uses[{e},{n}]")
                m.add_exactly_one(self.uses[e, n] for n in counts)
            for n in counts:
                # A bool: a rank never holds the same expert twice (counts are at most ep).
                for r in ranks:
                    self.on_rank[e, n, r] = m.new_bool_var(f"on_rank[{e},{n},{r}]")
                placed = sum(self.on_rank[e, n, r] for r in ranks)
                if len(counts) > 1:
                    m.add(placed == n * self.uses[e, n])
                elif n == 1:
                    m.add_exactly_one(self.on_rank[e, n, r] for r in ranks)
                else:
                    m.add(placed == n)
        # Implied by the slot counts below, but stated: it helps propagation.
        m.add(
            sum(n * v for (_, n), v in self.uses.items())
            + sum(counts[0] for counts in self.choices.values() if len(counts) == 1)
            == slots
        )

    def _add_rank_slots(self) -> None:
        """Every rank fills exactly slots_per_rank slots."""
        for r in range(self.ep):
            self.model.add(sum(v for _, _, v in self.on_rank_of(r)) == self.slots_per_rank)

    def _add_rank_loads(self, upper_bound: int) -> None:
        """rank_load[r] is the sum of its replicas' loads, each ceil(load / replicas)."""
        m = self.model
        for r in range(self.ep):
            self.rank_load[r] = m.new_int_var(0, upper_bound, f"rank_load[{r}]")
            m.add(
                self.rank_load[r]
                == sum(self.replica_load(e, n) * v for e, n, v in self.on_rank_of(r))
            )
            m.add(self.hottest >= self.rank_load[r])

    def _break_rank_symmetry(self) -> None:
        # Symmetry breaking: ranks are interchangeable, so relabel them until the hottest expert
        # (expert 0, loads are sorted) has a replica on rank 0. Ordering ranks by load would
        # break more symmetry, but it stalls CP-SAT's neighbourhood search (measured:
        # docs/placement.md), which must relabel ranks to move load between them.
        self.model.add(sum(self.on_rank[0, n, 0] for n in self.choices[0]) >= 1)

    def hint(self, ranks: tuple[tuple[int, ...], ...]) -> None:
        """Complete hint (every variable) from a placement; ranks are relabelled so that the
        symmetry-breaking rule holds."""
        holder = next(r for r, experts in enumerate(ranks) if 0 in experts)
        order = [holder] + [r for r in range(len(ranks)) if r != holder]
        ranks = tuple(ranks[r] for r in order)
        replicas = replica_counts(len(self.loads), ranks)
        m = self.model
        for (e, n), v in self.uses.items():
            m.add_hint(v, int(replicas[e] == n))
        for (e, n, r), v in self.on_rank.items():
            m.add_hint(v, ranks[r].count(e) if replicas[e] == n else 0)
        rank_loads = rank_loads_of(self.loads, ranks)
        for r, v in self.rank_load.items():
            m.add_hint(v, int(rank_loads[r]))
        m.add_hint(self.hottest, int(rank_loads.max()))

    def extract(self, solver: cp_model.CpSolver) -> tuple[tuple[int, ...], ...]:
        """The experts in each rank's slots, from a solved model."""
        ranks: list[list[int]] = [[] for _ in range(self.ep)]
        for (e, _, r), v in self.on_rank.items():
            ranks[r].extend([e] * solver.value(v))
        return tuple(tuple(sorted(experts)) for experts in ranks)


def build_placement_model(
    loads: np.ndarray,
    ep: int,
    redundant: int,
    greedy: GreedyResult,
    start: tuple[tuple[int, ...], ...],
    lower_bound: int,
) -> tuple[PlacementModel, bool]:
    """The model for loads sorted descending, hinted with ``start`` (a placement at least as good
    as the greedy). Returns it and whether its replica-count choices are exact."""
    known = [greedy.replicas, replica_counts(len(loads), start)]
    choices, exact = replica_count_choices(loads, ep, redundant, known)
    placement = PlacementModel(loads, ep, redundant, choices, lower_bound, greedy.hottest)
    placement.hint(start)
    return placement, exact


# ----------------------------------------------------------------------------------------------
# Solving
# ----------------------------------------------------------------------------------------------


def _closed_form(loads: np.ndarray, ep: int, redundant: int) -> tuple[tuple[int, ...], ...] | None:
    """A placement optimal by construction, or None. ``loads`` are sorted descending."""
    if redundant == 0 and ep == 1:
        return (tuple(range(len(loads))),)
    if redundant == 0 and len(loads) % ep == 0 and int(loads[0]) - int(loads[-1]) <= 1:
        # (Near-)uniform: dealing round-robin gives each rank the same number of experts, and of
        # the one-unit-heavier ones to within one: ceil(total / ep), the lower bound.
        return tuple(tuple(range(r, len(loads), ep)) for r in range(ep))
    return None


#: A CP-SAT placement call may run this many times its deterministic limit (plus the constant) in
#: wall-clock seconds before it is stopped regardless: the guard against a machine so loaded that
#: deterministic time and wall time part ways. Hitting it makes the result clock-dependent.
#: Measured on placement models: one deterministic unit takes 1-2.3 s of wall time with one
#: worker and up to 5 s with two interleaved workers (docs/placement.md), so the cap is generous.
WALL_CAP_FACTOR = 10.0
WALL_CAP_EXTRA_S = 1.0

#: The planner's (and the reference's) placement sub-model: CP-SAT only on exact models
#: (``polish_restricted=False``), one worker, this much deterministic time. Longer limits gained
#: at most 1% of the hottest rank on 16-expert layers and nothing measurable from 64 experts up
#: (docs/placement.md), while each costs the solve that much per ep.
PLANNER_DETERMINISTIC_S = 0.2
PLANNER_PLACEMENT_WORKERS = 1


def _solve_sorted(
    loads: tuple[int, ...],
    ep: int,
    redundant: int,
    time_limit_s: float,
    workers: int,
    seed: int,
    polish_restricted: bool = True,
    deadline: float = math.inf,
) -> PlacementResult:
    """Place experts whose loads are sorted descending (expert ids are sorted positions).

    Deterministic unless ``deadline`` (a ``time.monotonic()`` value) or the wall-clock cap
    intervenes: the heuristic is bounded by rounds, not seconds, and CP-SAT by deterministic time
    (``time_limit_s``) with its workers interleaved. The result says whether the clock played a
    part (``clock_free``)."""
    start_time = time.perf_counter()
    values = np.array(loads, dtype=np.int64)
    greedy = greedy_placement(values, ep, redundant)
    lower_bound = analytic_lower_bound(values, ep, redundant, greedy.hottest)
    clock_free = True

    def result(ranks, status: str, exact: bool = True, bound: int | None = None,
               proved: bool = False) -> PlacementResult:
        hottest = int(rank_loads_of(values, ranks).max())
        if hottest > greedy.hottest:  # every path keeps the greedy as a fallback: a bug, loudly
            raise AssertionError(f"placement ({hottest}) worse than greedy ({greedy.hottest})")
        lb = lower_bound if bound is None else bound
        return PlacementResult(
            ranks=ranks,
            hottest=hottest,
            lower_bound=lb,
            greedy_hottest=greedy.hottest,
            optimal=hottest == lb or proved,
            status=status,
            exact_model=exact,
            wall_time_s=time.perf_counter() - start_time,
            clock_free=clock_free,
        )

    closed = _closed_form(values, ep, redundant)
    if closed is not None and int(rank_loads_of(values, closed).max()) <= greedy.hottest:
        return result(closed, "TRIVIAL")
    start = heuristic_placement(values, ep, redundant, greedy, lower_bound, deadline, seed)
    if time.monotonic() >= deadline:
        clock_free = False
    if int(rank_loads_of(values, start).max()) == lower_bound:
        return result(start, "TRIVIAL")  # meets a proved lower bound: nothing to search

    known = [greedy.replicas, replica_counts(len(values), start)]
    choices, exact = replica_count_choices(values, ep, redundant, known)
    if not exact and not polish_restricted:
        # The restricted model only polishes the heuristic (measured: docs/placement.md) and
        # costs seconds to build on DeepSeek-sized layers; the planner skips it.
        return result(start, "HEURISTIC", exact=False)
    left = deadline - time.monotonic()
    if left <= 0:
        clock_free = False
        return result(start, "HEURISTIC", exact=exact)
    placement = PlacementModel(values, ep, redundant, choices, lower_bound, greedy.hottest)
    placement.hint(start)
    solver = cp_model.CpSolver()
    wall_cap = WALL_CAP_FACTOR * time_limit_s + WALL_CAP_EXTRA_S
    solver.parameters.max_deterministic_time = time_limit_s
    solver.parameters.max_time_in_seconds = min(wall_cap, left)
    solver.parameters.num_workers = workers
    # Workers take turns in batches (CP-SAT's interleaved search): the same answer whatever the
    # machine load, and whatever the number of workers.
    solver.parameters.interleave_search = True
    solver.parameters.random_seed = seed
    # Probing in presolve costs about a second on DeepSeek-V3-sized layers and did not pay for
    # itself in our measurements (docs/placement.md).
    solver.parameters.cp_model_probing_level = 0
    # On the large (restricted) model CP-SAT only polishes the hint, and presolve's dual
    # reductions can make the hint infeasible, leaving the short time limit to repairing it
    # (measured: status UNKNOWN on Qwen3-sized layers). The exact small models need those
    # reductions to prove optimality, so they keep them.
    solver.parameters.keep_all_feasible_solutions_in_presolve = not exact
    status = solver.solve(placement.model)
    if status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE) and \
            solver.deterministic_time < time_limit_s * 0.999:
        clock_free = False  # stopped by the wall clock, not by its deterministic budget
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    log.debug(
        "placement E=%d R=%d ep=%d: %s objective=%s bound=%s greedy=%d lower_bound=%d "
        "wall=%.3fs deterministic=%.3f",
        len(loads), redundant, ep, solver.status_name(status),
        solver.objective_value if found else None, solver.best_objective_bound,
        greedy.hottest, lower_bound, solver.wall_time, solver.deterministic_time,
    )
    ranks = placement.extract(solver) if found else start
    if int(rank_loads_of(values, ranks).max()) > int(rank_loads_of(values, start).max()):
        ranks = start  # a solve stopped early may hold a worse incumbent than the hint
    bound = lower_bound
    if found and exact:
        # The model admits every placement (symmetry breaking keeps one of each class), so its
        # bound is a bound of the problem.
        bound = max(lower_bound, int(np.ceil(solver.best_objective_bound - 1e-6)))
    return result(ranks, solver.status_name(status), exact, bound,
                  proved=exact and status == cp_model.OPTIMAL
                  and int(rank_loads_of(values, ranks).max()) == int(solver.objective_value))


class _ResultCache:
    """Placements by (sorted loads, ep, redundant, limits, seed); only results the clock played
    no part in are kept, so a cached answer is the answer any run would give."""

    def __init__(self, size: int = 1024):
        self.size = size
        self.hits = 0
        self._store: dict[tuple, PlacementResult] = {}

    def __call__(self, loads, ep, redundant, time_limit_s, workers, seed, polish_restricted=True,
                 deadline=math.inf) -> PlacementResult:
        key = (loads, ep, redundant, time_limit_s, workers, seed, polish_restricted)
        got = self._store.get(key)
        if got is not None:
            self.hits += 1
            return got
        got = _solve_sorted(loads, ep, redundant, time_limit_s, workers, seed, polish_restricted,
                            deadline)
        if got.clock_free:
            if len(self._store) >= self.size:
                self._store.pop(next(iter(self._store)))
            self._store[key] = got
        return got


_solve_sorted_cached = _ResultCache()


def _place(
    solve, loads: np.ndarray, ep: int, redundant: int, time_limit_s: float, workers: int, seed: int,
    polish_restricted: bool, deadline: float | None,
) -> PlacementResult:
    values = check_placement_input(loads, ep, redundant)
    if not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # Stable descending order: sorted position i is original expert order[i].
    order = np.argsort(-values, kind="stable")
    solved = solve(
        tuple(int(v) for v in values[order]), ep, redundant, float(time_limit_s), workers, seed,
        polish_restricted, math.inf if deadline is None else deadline,
    )
    ranks = tuple(tuple(sorted(int(order[e]) for e in experts)) for experts in solved.ranks)
    return dataclasses.replace(solved, ranks=ranks)


def place_experts(
    loads: np.ndarray,
    ep: int,
    redundant: int = 0,
    *,
    time_limit_s: float = 1.0,
    workers: int = 2,
    seed: int = 0,
    polish_restricted: bool = True,
    deadline: float | None = None,
) -> PlacementResult:
    """Place one MoE layer's experts (and ``redundant`` extra replicas) on ``ep`` ranks,
    minimising the hottest rank's load; never worse than the greedy baseline.

    ``loads`` are non-negative integer load units, one per expert; ``ep`` must divide
    ``len(loads) + redundant``. Raises ValueError naming the rule otherwise.

    ``time_limit_s`` is CP-SAT's *deterministic* time limit (about a second of an idle core per
    unit), so the same input gives the same placement on a busy and an idle machine; a wall-clock
    cap of ``WALL_CAP_FACTOR × time_limit_s + WALL_CAP_EXTRA_S`` and ``deadline`` (a
    ``time.monotonic()`` value) stop it regardless, and the result then says ``clock_free=False``.
    With ``polish_restricted=False`` CP-SAT runs only on exact (small) models.
    """
    return _place(_solve_sorted, loads, ep, redundant, time_limit_s, workers, seed,
                  polish_restricted, deadline)


def place_experts_cached(
    loads: np.ndarray,
    ep: int,
    redundant: int = 0,
    *,
    time_limit_s: float = 1.0,
    workers: int = 2,
    seed: int = 0,
    polish_restricted: bool = True,
    deadline: float | None = None,
    memo: dict | None = None,
) -> PlacementResult:
    """:func:`place_experts`, solved once per (sorted loads, ep, redundant, limits, seed): layers
    whose loads are permutations of each other (the power law) share one solve, mapped back
    through each layer's permutation. Results cut short by the clock are not cached across
    calls, except in ``memo`` (the caller's own dict, e.g. one per solve)."""
    solve = _solve_sorted_cached
    if memo is not None:
        def solve(*args):
            got = memo.get(args[:7])
            if got is None:
                got = memo[args[:7]] = _solve_sorted_cached(*args)
            return got
    return _place(solve, loads, ep, redundant, time_limit_s, workers, seed, polish_restricted,
                  deadline)


# ----------------------------------------------------------------------------------------------
# Measuring: python -m solver.placement --experts 256 --redundant 32 --alpha 1.01 --ep 8 16 32
# ----------------------------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> None:
    """Time place_experts on one power-law layer for several ep (docs/placement.md)."""
    import argparse

    from solver.loads import zipf_loads

    parser = argparse.ArgumentParser(prog="python -m solver.placement", description=_main.__doc__)
    parser.add_argument("--experts", type=int, default=256, help="routed experts E")
    parser.add_argument("--redundant", type=int, default=32, help="redundant slots R")
    parser.add_argument("--alpha", type=float, default=1.01, help="power-law exponent")
    parser.add_argument("--ep", type=int, nargs="+", default=[8, 16, 32, 64], help="EP degrees")
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds per solve")
    parser.add_argument("--workers", type=int, default=2, help="CP-SAT workers")
    args = parser.parse_args(argv)

    loads = zipf_loads(args.experts, args.alpha)
    print("| E | R | ep | greedy | placed | lower bound | gap | status | optimal | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ep in args.ep:
        if (args.experts + args.redundant) % ep:
            print(
                f"| {args.experts} | {args.redundant} | {ep} | — | — | — | — | "
                f"ep does not divide E + R = {args.experts + args.redundant} | — | — |"
            )
            continue
        start = time.perf_counter()
        result = place_experts(
            loads, ep, args.redundant, time_limit_s=args.time_limit, workers=args.workers
        )
        seconds = time.perf_counter() - start
        gap = (result.hottest - result.lower_bound) / result.lower_bound
        print(
            f"| {args.experts} | {args.redundant} | {ep} | {result.greedy_hottest} | "
            f"{result.hottest} | {result.lower_bound} | {gap:.4%} | {result.status} | "
            f"{'yes' if result.optimal else 'no'} | {seconds:.2f} |"
        )


if __name__ == "__main__":
    _main()
