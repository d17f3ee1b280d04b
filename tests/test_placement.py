"""Expert placement: the greedy baseline (solver.baselines) and the CP-SAT sub-model
(solver.placement), checked against hand examples and brute force on tiny instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from solver.baselines import greedy_placement, lpt_pack, water_fill_replicas
from solver.loads import zipf_loads
from solver.placement import (
    _solve_sorted_cached,
    analytic_lower_bound,
    build_placement_model,
    improve_by_swaps,
    least_replicated_total,
    min_max_replica_load,
    place_experts,
    place_experts_cached,
    rank_loads_of,
    replica_counts,
)

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------------------------
# Brute force: every replica count vector, every assignment of replicas to ranks
# ----------------------------------------------------------------------------------------------


def _best_partition(items: list[tuple[int, int]], ep: int, slots_per_rank: int, cutoff: int) -> int:
    """Least possible hottest rank for ``(expert, load)`` items on ``ep`` ranks of
    ``slots_per_rank`` slots, no rank holding an expert twice; ``cutoff`` if none is lower."""
    items = sorted(items, key=lambda item: -item[1])
    loads, held = [0] * ep, [set() for _ in range(ep)]
    best = cutoff

    def place(i: int, peak: int) -> None:
        nonlocal best
        if peak >= best:
            return
        if i == len(items):
            best = peak
            return
        expert, load = items[i]
        for r in range(ep):
            if len(held[r]) == slots_per_rank or expert in held[r]:
                continue
            loads[r] += load
            held[r].add(expert)
            place(i + 1, max(peak, loads[r]))
            loads[r] -= load
            held[r].remove(expert)

    place(0, 0)
    return best


def brute_force_hottest(loads: list[int], ep: int, redundant: int) -> int:
    """The optimum over all replica counts (at most ep each) and all placements (tiny only)."""
    slots_per_rank = (len(loads) + redundant) // ep
    best = math.inf
    for extra in itertools.combinations_with_replacement(range(len(loads)), redundant):
        replicas = [1 + extra.count(e) for e in range(len(loads))]
        if max(replicas) > ep:
            continue
        items = [
            (e, -(-load // n))
            for e, (load, n) in enumerate(zip(loads, replicas, strict=True))
            for _ in range(n)
        ]
        best = _best_partition(items, ep, slots_per_rank, min(best, sum(w for _, w in items) + 1))
    return int(best)


@st.composite
def tiny_instances(draw, max_experts: int = 6, max_redundant: int = 2, max_load: int = 60):
    """(loads, ep, redundant) with ep dividing E + redundant, small enough for brute force."""
    num_experts = draw(st.integers(2, max_experts))
    redundant = draw(st.integers(0, max_redundant))
    slots = num_experts + redundant
    # ep divides the slots and leaves at most E slots per rank (experts are distinct per rank).
    ep = draw(
        st.sampled_from(
            [d for d in range(1, 5) if slots % d == 0 and slots // d <= num_experts] or [1]
        )
    )
    if slots // ep > num_experts:
        redundant, ep = 0, 1
    loads = draw(st.lists(st.integers(0, max_load), min_size=num_experts, max_size=num_experts))
    return loads, ep, redundant


def assert_valid(loads: list[int], ep: int, redundant: int, ranks) -> None:
    """Every expert placed at least once, every rank holds the same number of slots, and no
    rank holds an expert twice."""
    assert len(ranks) == ep
    assert {len(r) for r in ranks} == {(len(loads) + redundant) // ep}
    assert set(itertools.chain.from_iterable(ranks)) == set(range(len(loads)))
    assert all(len(set(r)) == len(r) for r in ranks)


def solve_model_only(loads: list[int], ep: int, redundant: int, *, fix_to_hint: bool = False):
    """Solve the CP-SAT model itself (no heuristic in front), hinted with the greedy placement.
    Loads are sorted descending first, as place_experts does."""
    values = np.array(sorted(loads, reverse=True), dtype=np.int64)
    greedy = greedy_placement(values, ep, redundant)
    lower_bound = analytic_lower_bound(values, ep, redundant, greedy.hottest)
    model, exact = build_placement_model(values, ep, redundant, greedy, greedy.ranks, lower_bound)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10.0
    solver.parameters.fix_variables_to_their_hinted_value = fix_to_hint
    status = solver.solve(model.model)
    return status, solver, model, greedy, values, exact


# ----------------------------------------------------------------------------------------------
# Greedy baseline
# ----------------------------------------------------------------------------------------------


def test_greedy_hand_example() -> None:
    result = greedy_placement(np.array([50, 30, 15, 5]), ep=2, redundant=0)
    assert {frozenset(r) for r in result.ranks} == {frozenset({0, 3}), frozenset({1, 2})}
    assert sorted(result.rank_loads.tolist()) == [45, 55]
    assert result.hottest == 55
    assert result.replicas.tolist() == [1, 1, 1, 1]


def test_greedy_replicates_the_largest_load_per_replica() -> None:
    # 100 → 2 replicas (50 each), still the largest → 3 (34 each); 10s stay single.
    result = greedy_placement(np.array([10, 100, 10, 10]), ep=3, redundant=2)
    assert result.replicas.tolist() == [1, 3, 1, 1]
    assert water_fill_replicas(np.array([30, 30, 20]), 2).tolist() == [2, 2, 1]
    assert [r.count(1) for r in result.ranks] == [1, 1, 1]  # one replica per rank
    # ceil(100 / 3) = 34 per replica: conservative integers.
    assert int(result.rank_loads.sum()) == 3 * 34 + 30
    # At most ep replicas: on 2 ranks the 100 keeps 2 and the next slot goes to a 10.
    capped = greedy_placement(np.array([10, 100, 10, 10]), ep=2, redundant=2)
    assert capped.replicas.tolist() == [2, 2, 1, 1]
    assert all(len(set(r)) == len(r) for r in capped.ranks)


def test_greedy_never_puts_an_expert_twice_on_a_rank() -> None:
    # Qwen3-sized power law: the hottest expert would get 13 replicas on 8 ranks uncapped.
    result = greedy_placement(zipf_loads(128, 1.01), ep=8, redundant=32)
    assert int(result.replicas.max()) == 8
    assert_valid(list(range(128)), 8, 32, result.ranks)
    # The LPT step's repair: the last replica's only open rank already holds its expert.
    ranks, loads = lpt_pack([(0, 5), (1, 4), (2, 3), (0, 1)], ep=2, slots_per_rank=2)
    assert all(len(set(r)) == len(r) for r in ranks) and sorted(loads.tolist()) == [5, 8]


@settings(max_examples=60, deadline=None)
@given(tiny_instances(max_experts=10, max_redundant=4, max_load=1000))
def test_greedy_places_every_expert_on_equal_slots(instance) -> None:
    loads, ep, redundant = instance
    result = greedy_placement(np.array(loads), ep, redundant)
    assert_valid(loads, ep, redundant, result.ranks)
    assert int(result.replicas.sum()) == len(loads) + redundant
    assert np.array_equal(result.rank_loads, rank_loads_of(np.array(loads), result.ranks))
    assert result.hottest == int(result.rank_loads.max())


def test_invalid_input_names_the_rule() -> None:
    with pytest.raises(ValueError, match=r"ep \(3\) must divide .* \(4 \+ 0 = 4\)"):
        place_experts(np.array([1, 2, 3, 4]), ep=3)
    with pytest.raises(ValueError, match="non-negative"):
        place_experts(np.array([1, -2, 3, 4]), ep=2)
    with pytest.raises(ValueError, match="integers"):
        greedy_placement(np.array([1.5, 2.0]), ep=2, redundant=0)
    with pytest.raises(ValueError, match="ep must be >= 1"):
        place_experts(np.array([1, 2]), ep=0)
    with pytest.raises(ValueError, match=r"slots per rank \(3 / 1 = 3\) cannot exceed"):
        place_experts(np.array([1, 2]), ep=1, redundant=1)


# ----------------------------------------------------------------------------------------------
# Lower bounds
# ----------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=20),
    st.integers(0, 10),
    st.integers(1, 12),
)
def test_water_filling_attains_the_least_max_replica_load(loads: list[int], redundant, cap):
    values = np.array(loads, dtype=np.int64)
    redundant = min(redundant, len(loads) * (cap - 1))  # the slots must fit under the cap
    replicas = water_fill_replicas(values, redundant, max_replicas=cap)
    assert int(replicas.max()) <= cap
    greedy_max = max(-(-int(v) // int(n)) for v, n in zip(values, replicas, strict=True))
    assert min_max_replica_load(values, len(loads) + redundant, cap) == greedy_max


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=5), st.integers(0, 3), st.data())
def test_least_replicated_total_matches_enumeration(loads: list[int], redundant, data) -> None:
    values = np.array(loads, dtype=np.int64)
    cap = data.draw(st.integers(1, 60))
    most = data.draw(st.integers(1, 4))
    found = least_replicated_total(values, len(loads) + redundant, cap, most)
    totals = []
    for extra in itertools.combinations_with_replacement(range(len(loads)), redundant):
        replicas = [1 + extra.count(e) for e in range(len(loads))]
        per_replica = [-(-v // n) for v, n in zip(loads, replicas, strict=True)]
        if max(per_replica) <= cap and max(replicas) <= most:
            totals.append(sum(p * n for p, n in zip(per_replica, replicas, strict=True)))
    if not totals:
        assert found is None
    else:
        assert found is not None and found[0] == min(totals)
        counts = found[1]
        assert int(counts.sum()) == len(loads) + redundant and int(counts.max()) <= most
        assert sum(int(n) * -(-v // int(n)) for v, n in zip(loads, counts, strict=True)) == found[0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 30),
    st.integers(0, 30),
    st.lists(st.integers(0, 10_000), min_size=180, max_size=180),
    st.integers(0, 3),
)
def test_local_search_keeps_slots_distinct_experts_and_never_raises_the_peak(
    ep, slots_per_rank, spare_experts, pool, seed
):
    weights = np.array(pool[: ep * slots_per_rank], dtype=np.int64)
    rank_of = np.repeat(np.arange(ep), slots_per_rank)
    # Each rank holds distinct experts; the same expert may sit on several ranks.
    rng = np.random.default_rng(seed)
    num_experts = slots_per_rank + spare_experts
    experts = np.concatenate(
        [rng.choice(num_experts, size=slots_per_rank, replace=False) for _ in range(ep)]
    )
    improved = improve_by_swaps(weights, experts, rank_of, ep, rounds=50, seed=seed)
    assert np.bincount(improved, minlength=ep).tolist() == [slots_per_rank] * ep
    for r in range(ep):
        held = experts[improved == r]
        assert len(set(held.tolist())) == len(held)
    before = np.bincount(rank_of, weights, minlength=ep).max()
    after = np.bincount(improved, weights, minlength=ep).max()
    assert after <= before
    assert after >= -(-int(weights.sum()) // ep)


# ----------------------------------------------------------------------------------------------
# CP-SAT placement
# ----------------------------------------------------------------------------------------------


def test_beats_lpt_where_lpt_is_suboptimal() -> None:
    # LPT: 3→r0, 3→r1, 2→r0, 2→r1, 2→r0 (7), 0→r1. Optimum: {3, 3, 0} and {2, 2, 2}: 6.
    loads = [3, 3, 2, 2, 2, 0]
    assert greedy_placement(np.array(loads), ep=2, redundant=0).hottest == 7
    result = place_experts(np.array(loads), ep=2)
    assert (result.hottest, result.greedy_hottest, result.lower_bound) == (6, 7, 6)
    assert result.optimal
    assert sorted(sorted(loads[e] for e in r) for r in result.ranks) == [[0, 3, 3], [2, 2, 2]]
    # The model alone, started from the greedy, finds and proves it too.
    status, solver, *_ = solve_model_only(loads, 2, 0)
    assert status == cp_model.OPTIMAL and solver.objective_value == 6


@settings(max_examples=120, deadline=None)
@given(tiny_instances())
@example(([0, 0, 0, 8, 23, 46], 4, 2))  # ties: the greedy differs a unit between numberings
def test_never_worse_than_greedy_and_optimal_on_tiny_instances(instance) -> None:
    loads, ep, redundant = instance
    result = place_experts(np.array(loads), ep, redundant, time_limit_s=5.0, workers=1)
    assert_valid(loads, ep, redundant, result.ranks)
    assert result.hottest == int(rank_loads_of(np.array(loads), result.ranks).max())
    # the baseline numbers experts by descending load (PlacementResult.greedy_hottest)
    by_load = np.array(sorted(loads, reverse=True))
    assert result.greedy_hottest == greedy_placement(by_load, ep, redundant).hottest
    assert result.lower_bound <= result.hottest <= result.greedy_hottest
    optimum = brute_force_hottest(loads, ep, redundant)
    assert result.lower_bound <= optimum  # the bound is proved, so never above the optimum
    assert result.optimal and result.hottest == optimum


@settings(max_examples=60, deadline=None)
@given(tiny_instances(max_experts=5))
def test_model_with_symmetry_breaking_matches_brute_force(instance) -> None:
    """Symmetry breaking (the hottest expert on rank 0) keeps an optimal placement."""
    loads, ep, redundant = instance
    status, solver, model, _, values, exact = solve_model_only(loads, ep, redundant)
    assert exact and status == cp_model.OPTIMAL
    assert solver.objective_value == brute_force_hottest(loads, ep, redundant)
    ranks = model.extract(solver)
    assert 0 in ranks[0]  # the symmetry-breaking rule holds
    assert_valid(loads, ep, redundant, ranks)
    assert int(rank_loads_of(values, ranks).max()) == solver.objective_value


@settings(max_examples=40, deadline=None)
@given(tiny_instances(max_experts=8, max_redundant=3))
def test_greedy_hint_is_complete_and_feasible(instance) -> None:
    loads, ep, redundant = instance
    status, solver, _, greedy, *_ = solve_model_only(loads, ep, redundant, fix_to_hint=True)
    assert status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    assert solver.objective_value == greedy.hottest


def test_trivial_cases_need_no_model() -> None:
    single = place_experts(np.array([5, 1, 3]), ep=1)
    assert single.status == "TRIVIAL" and single.ranks == ((0, 1, 2),) and single.hottest == 9
    uniform = place_experts(np.array([7, 7, 8, 7, 7, 8, 7, 7]), ep=4)
    assert uniform.status == "TRIVIAL" and uniform.optimal
    assert uniform.hottest == uniform.lower_bound == 15


def test_cache_solves_a_permuted_multiset_once() -> None:
    loads = np.array([40, 3, 17, 9, 22, 5, 11, 30])
    permutation = np.random.default_rng(0).permutation(len(loads))
    hits = _solve_sorted_cached.hits
    first = place_experts_cached(loads, ep=2, redundant=2)
    second = place_experts_cached(loads[permutation], ep=2, redundant=2)
    assert _solve_sorted_cached.hits == hits + 1
    assert first.hottest == second.hottest and first.lower_bound == second.lower_bound
    # The second placement is the first one mapped through the permutation.
    position = {int(e): i for i, e in enumerate(permutation)}
    mapped = tuple(tuple(sorted(position[e] for e in r)) for r in first.ranks)
    assert second.ranks == mapped
    assert int(rank_loads_of(loads[permutation], second.ranks).max()) == second.hottest


def test_deepseek_v3_power_law_is_solved_and_proved() -> None:
    # 256 experts, 32 redundant slots, alpha 1.01, ep 16: the bound is met (docs/placement.md).
    loads = zipf_loads(256, 1.01)
    result = place_experts(loads, ep=16, redundant=32, time_limit_s=5.0)  # slack for slow CI
    assert result.optimal and result.hottest == result.lower_bound < result.greedy_hottest
    assert_valid(list(loads), 16, 32, result.ranks)
    assert int(replica_counts(256, result.ranks).sum()) == 288


# ----------------------------------------------------------------------------------------------
# Deterministic budgets (issue 10): the same answer on a busy and an idle machine
# ----------------------------------------------------------------------------------------------


def _burn(stop) -> None:  # a busy core
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@pytest.mark.parametrize(("experts", "redundant", "ep"), [(16, 8, 8), (32, 8, 10)])
def test_same_placement_on_a_busy_machine(experts: int, redundant: int, ep: int) -> None:
    """CP-SAT runs here (the heuristic misses the bound on these layers) and is stopped by its
    deterministic time, not the clock: two cores kept busy by other processes change nothing."""
    import multiprocessing

    loads = zipf_loads(experts, 1.01)
    idle = place_experts(loads, ep, redundant, time_limit_s=0.2, workers=1)
    assert idle.status == "FEASIBLE" and idle.clock_free  # CP-SAT ran and was not cut short
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=_burn, args=(stop,)) for _ in range(2)]
    for p in burners:
        p.start()
    try:
        busy = place_experts(loads, ep, redundant, time_limit_s=0.2, workers=1)
    finally:
        stop.set()
        for p in burners:
            p.join()
    assert busy.clock_free
    assert busy.ranks == idle.ranks and busy.hottest == idle.hottest


def test_two_interleaved_workers_repeat_themselves() -> None:
    loads = zipf_loads(32, 1.01)
    first, second = (place_experts(loads, 10, 8, time_limit_s=0.2, workers=2) for _ in range(2))
    assert first.status == "FEASIBLE"
    assert first.ranks == second.ranks


def test_a_passed_deadline_gives_a_valid_placement_marked_and_not_cached() -> None:
    import time

    loads = zipf_loads(32, 1.01)
    hits = _solve_sorted_cached.hits
    late = place_experts_cached(loads, 10, 8, time_limit_s=0.2, workers=1,
                                deadline=time.monotonic() - 1)
    assert not late.clock_free
    assert_valid(list(loads), 10, 8, late.ranks)
    assert late.lower_bound <= late.hottest <= late.greedy_hottest
    # Not cached: the next call with time solves afresh and may do better.
    again = place_experts_cached(loads, 10, 8, time_limit_s=0.2, workers=1)
    assert _solve_sorted_cached.hits == hits and again.clock_free
    assert again.hottest <= late.hottest


def test_planner_mode_never_builds_the_restricted_model() -> None:
    """DeepSeek-V3-sized layers: the restricted CP-SAT model only polishes the heuristic and
    costs seconds to build, so the planner's mode skips it (status HEURISTIC) and is never worse
    than the greedy."""
    loads = zipf_loads(256, 1.01)
    got = place_experts(loads, 72, 32, polish_restricted=False, workers=1)
    assert got.status == "HEURISTIC" and not got.exact_model
    assert got.lower_bound <= got.hottest <= got.greedy_hottest
    assert_valid(list(loads), 72, 32, got.ranks)
