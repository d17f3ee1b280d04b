"""solver/placement.py beyond tests/test_placement.py: hand-derived bounds, the documented
defaults and caches, the CP-SAT model on replica choices the planner's own calls never make,
and the heuristic's pieces (mutation testing, docs/testing.md)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from ortools.sat.python import cp_model

from solver import placement
from solver.baselines import greedy_placement
from solver.placement import (
    PlacementModel,
    PlacementResult,
    _ResultCache,
    build_placement_model,
    pack,
    pigeonhole_bound,
    place_experts,
    place_experts_cached,
    rank_loads_of,
    replica_counts,
)

pytestmark = pytest.mark.unit


def solve(model: PlacementModel) -> tuple[int, cp_model.CpSolver]:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10.0
    return solver.solve(model.model), solver


# -- the pigeonhole bound ------------------------------------------------------------------------


@pytest.mark.parametrize(("loads", "ep", "bound"), [
    # 2 slots per rank. j = 0: the heaviest (10) plus the lightest (1) = 11; j = 1: of the 3
    # heaviest some rank holds 2, at least the 2 lightest of them 9 + 8 = 17
    ([10, 9, 8, 1], 2, 17),
    ([1, 10, 4, 5], 2, 11),  # j = 0: 10 + 1; j = 1: 5 + 4 = 9
    # 3 slots per rank: j = 0: 9 + (2 + 3) = 14; j = 1: (7 + 6) + 2 = 15; j = 2: 6 + 5 + 3 = 14
    ([9, 7, 6, 5, 3, 2], 2, 15),
    ([5, 5, 5], 1, 15),  # one rank holds everything
])
def test_pigeonhole_bound_by_hand(loads: list[int], ep: int, bound: int) -> None:
    assert pigeonhole_bound(np.array(loads, dtype=np.int64), ep) == bound


# -- defaults, the per-solve memo and the cache --------------------------------------------------


class Recorder:
    """Stands in for the solver behind place_experts: records its arguments and answers with
    the greedy placement of the sorted loads."""

    def __init__(self, clock_free: bool = True):
        self.calls: list[tuple] = []
        self.clock_free = clock_free

    def __call__(self, loads, ep, redundant, time_limit_s, workers, seed, polish_restricted=True,
                 deadline=math.inf) -> PlacementResult:
        self.calls.append((loads, ep, redundant, time_limit_s, workers, seed, polish_restricted,
                           deadline))
        g = greedy_placement(np.array(loads, dtype=np.int64), ep, redundant)
        return PlacementResult(ranks=g.ranks, hottest=g.hottest, lower_bound=0,
                               greedy_hottest=g.hottest, optimal=False, status="TEST",
                               clock_free=self.clock_free)


LOADS = np.array([5, 40, 3, 17])


def test_place_experts_defaults(monkeypatch) -> None:
    """One deterministic second, two workers, seed 0, the restricted model polished, no
    deadline; the loads reach the solver sorted descending."""
    rec = Recorder()
    monkeypatch.setattr(placement, "_solve_sorted", rec)
    got = place_experts(LOADS, 2)
    assert rec.calls == [((40, 17, 5, 3), 2, 0, 1.0, 2, 0, True, math.inf)]
    # the answer is mapped back to the caller's expert ids: sorted position 0 is expert 1
    assert sorted(got.ranks) == sorted(tuple(sorted(int([1, 3, 0, 2][e]) for e in r))
                                       for r in greedy_placement(np.array([40, 17, 5, 3]), 2,
                                                                 0).ranks)
    place_experts(LOADS, 2, 2, time_limit_s=0.5, workers=1, seed=3, polish_restricted=False,
                  deadline=123.0)
    assert rec.calls[-1] == ((40, 17, 5, 3), 2, 2, 0.5, 1, 3, False, 123.0)


def test_place_experts_cached_defaults_and_memo(monkeypatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(placement, "_solve_sorted_cached", rec)
    place_experts_cached(LOADS, 2)
    assert rec.calls == [((40, 17, 5, 3), 2, 0, 1.0, 2, 0, True, math.inf)]
    # a memo answers a repeated multiset itself, keyed without the deadline
    memo: dict = {}
    first = place_experts_cached(LOADS, 2, 2, memo=memo, deadline=50.0)
    again = place_experts_cached(LOADS[::-1], 2, 2, memo=memo, deadline=99.0)
    assert len(rec.calls) == 2 and list(memo) == [((40, 17, 5, 3), 2, 2, 1.0, 2, 0, True)]
    assert memo[((40, 17, 5, 3), 2, 2, 1.0, 2, 0, True)].hottest == first.hottest
    assert again.hottest == first.hottest
    place_experts_cached(LOADS, 2, 2, memo=memo, polish_restricted=False)
    assert len(rec.calls) == 3 and rec.calls[-1][6] is False


def test_result_cache_keeps_clock_free_answers_and_evicts_the_oldest(monkeypatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(placement, "_solve_sorted", rec)
    cache = _ResultCache(size=2)
    cache((3, 1), 2, 0, 1.0, 1, 0)
    assert rec.calls[-1][6] is True  # polishing by default
    cache((3, 1), 2, 0, 1.0, 1, 0)
    assert (len(rec.calls), cache.hits) == (1, 1)
    cache((4, 1), 2, 0, 1.0, 1, 0)
    cache((5, 1), 2, 0, 1.0, 1, 0, False)  # a third key: the oldest, (3, 1), goes
    assert rec.calls[-1][6] is False
    assert list(cache._store) == [((4, 1), 2, 0, 1.0, 1, 0, True),
                                  ((5, 1), 2, 0, 1.0, 1, 0, False)]
    cache((3, 1), 2, 0, 1.0, 1, 0)
    assert (len(rec.calls), cache.hits) == (4, 1)
    # an answer the clock cut short is not kept
    late = Recorder(clock_free=False)
    monkeypatch.setattr(placement, "_solve_sorted", late)
    cold = _ResultCache(size=2)
    cold((7, 1), 2, 0, 1.0, 1, 0)
    cold((7, 1), 2, 0, 1.0, 1, 0)
    assert (len(late.calls), cold.hits, cold._store) == (2, 0, {})


def test_pack_defaults_to_descent_without_exchange_rounds() -> None:
    """Twelve experts on 2 ranks (total 314): LPT and single/pair exchanges stop at 158; one
    exact many-for-many exchange reaches ⌈314/2⌉ = 157."""
    loads = np.array([50, 5, 10, 6, 48, 22, 35, 3, 59, 39, 17, 20])
    ones = np.ones(12, dtype=np.int64)
    plain = pack(loads, ones, 2)
    assert plain == pack(loads, ones, 2, rounds=0, seed=0, target=0)
    assert int(rank_loads_of(loads, plain).max()) == 158
    exchanged = pack(loads, ones, 2, rounds=1)
    assert int(rank_loads_of(loads, exchanged).max()) == 157


# -- the CP-SAT model --------------------------------------------------------------------------


def test_a_fixed_replica_count_above_one() -> None:
    """Choices are the caller's: an expert fixed at 2 replicas sits on exactly 2 ranks. Loads
    8, 3, 3, 2 and one redundant slot on 5 ranks of one slot: expert 0 as 4 + 4, hottest 4."""
    loads = np.array([8, 3, 3, 2])
    model = PlacementModel(loads, ep=5, redundant=1, choices={0: [2], 1: [1], 2: [1], 3: [1]},
                           lower_bound=0, upper_bound=8)
    status, solver = solve(model)
    assert status == cp_model.OPTIMAL and solver.objective_value == 4
    ranks = model.extract(solver)
    assert replica_counts(4, ranks).tolist() == [2, 1, 1, 1]
    assert sorted(len(r) for r in ranks) == [1] * 5


def test_symmetry_breaking_uses_the_hottest_experts_own_choices() -> None:
    """ep 3, seven experts (9 then six 1s) and two redundant slots, only expert 0 replicable:
    it must take 3 replicas (3 each) to fill the 9 slots: every rank 3 + 1 + 1 = 5."""
    loads = np.array([9, 1, 1, 1, 1, 1, 1])
    choices = {0: [1, 2, 3], **{e: [1] for e in range(1, 7)}}
    model = PlacementModel(loads, ep=3, redundant=2, choices=choices, lower_bound=0,
                           upper_bound=20)
    status, solver = solve(model)
    assert status == cp_model.OPTIMAL and solver.objective_value == 5
    ranks = model.extract(solver)
    assert 0 in ranks[0] and replica_counts(7, ranks)[0] == 3


def test_a_layer_too_large_for_the_exact_model_offers_counts_around_the_known_ones() -> None:
    """72 experts, 8 redundant slots, ep 8: 72·8·8 > 4096, so only the 8 heaviest experts and
    those a hinted placement replicates may take more than one replica (up to the most known
    plus 2)."""
    loads = np.array(sorted(range(100, 172), reverse=True), dtype=np.int64)
    greedy = greedy_placement(loads, 8, 8)
    model, exact = build_placement_model(loads, 8, 8, greedy, greedy.ranks, 0)
    assert not exact
    most = np.maximum(greedy.replicas, replica_counts(72, greedy.ranks))
    for e, counts in model.choices.items():
        if e < 8 or most[e] > 1:
            assert counts == list(range(1, min(8, int(most[e]) + 2) + 1)), e
        else:
            assert counts == [1], e


# -- the closed forms and the result's fields ------------------------------------------------------


@pytest.mark.parametrize(("loads", "ep", "redundant", "want"), [
    ([5, 3, 1], 1, 0, ((0, 1, 2),)),  # one rank holds every expert
    ([4, 4, 3, 3, 3, 3], 2, 0, ((0, 2, 4), (1, 3, 5))),  # within one unit: dealt round-robin
    ([3, 3, 3, 3, 3, 3], 3, 0, ((0, 3), (1, 4), (2, 5))),
    ([2, 2, 1, 1], 2, 0, ((0, 2), (1, 3))),
    ([5, 3, 3, 3], 2, 0, None),  # 5 − 3 = 2: not near-uniform
    ([4, 4, 3, 3, 3, 3], 4, 0, None),  # 4 does not divide 6
    ([5, 3, 1], 1, 1, None),  # redundant slots: no closed form
    ([4, 4, 3, 3], 2, 2, None),
])
def test_closed_forms(loads, ep, redundant, want) -> None:
    assert placement._closed_form(np.array(loads, dtype=np.int64), ep, redundant) == want


def test_a_near_uniform_layer_is_dealt_round_robin() -> None:
    """4, 3, 3, 3, 3, 3 on 2 ranks: round-robin gives 10 | 9, as good as the greedy's 10 | 9
    (4 + 3 + 3 | 3 + 3 + 3 by LPT) and proved by ⌈19/2⌉ = 10: the closed form is the answer."""
    got = place_experts(np.array([4, 3, 3, 3, 3, 3]), 2)
    assert got.ranks == ((0, 2, 4), (1, 3, 5)) and got.status == "TRIVIAL"
    assert (got.hottest, got.lower_bound, got.greedy_hottest) == (10, 10, 10)


def test_a_single_rank_result_and_its_fields() -> None:
    start = time.perf_counter()
    got = place_experts(np.array([5, 1, 3]), 1)
    elapsed = time.perf_counter() - start
    assert got == PlacementResult(ranks=((0, 1, 2),), hottest=9, lower_bound=9,
                                  greedy_hottest=9, optimal=True, status="TRIVIAL",
                                  exact_model=True)
    assert got.clock_free is True and 0 <= got.wall_time_s <= elapsed


def test_the_heuristic_meeting_the_bound_is_trivial() -> None:
    """5, 4, 3, 2 on 2 ranks: LPT gives 5 + 2 | 4 + 3 = 7 = ⌈14/2⌉, no search needed."""
    got = place_experts(np.array([5, 4, 3, 2]), 2)
    assert (got.status, got.hottest, got.lower_bound, got.optimal) == ("TRIVIAL", 7, 7, True)
    assert got.exact_model is True and got.clock_free is True


@pytest.mark.parametrize("polish_restricted", [True, False])
def test_cpsat_proves_a_bound_above_the_analytic_one(polish_restricted: bool) -> None:
    """21, 15, 10, 4 with 2 redundant slots on 2 ranks: the analytic bound is 25, the optimum
    (brute force) 28; CP-SAT runs on this exact model in either mode, proves 28 and says so,
    well inside a deadline 5 s away."""
    from test_placement import brute_force_hottest

    loads = np.array([21, 15, 10, 4])
    values = np.sort(loads)[::-1]
    greedy = greedy_placement(values, 2, 2)
    assert placement.analytic_lower_bound(values, 2, 2, greedy.hottest) == 25
    assert brute_force_hottest([21, 15, 10, 4], 2, 2) == 28
    got = place_experts(loads, 2, 2, workers=1, polish_restricted=polish_restricted,
                        deadline=time.monotonic() + 5.0)
    assert (got.status, got.hottest, got.lower_bound, got.optimal) == ("OPTIMAL", 28, 28, True)
    assert got.exact_model is True and got.clock_free is True


def test_a_passed_deadline_answers_with_the_heuristic() -> None:
    """Zipf loads of 32 experts, 8 redundant slots, ep 10 (CP-SAT is needed there): with the
    deadline already past, the heuristic's placement, marked clock-dependent."""
    from solver.loads import zipf_loads

    got = place_experts(zipf_loads(32, 1.01), 10, 8, time_limit_s=0.2, workers=1,
                        deadline=time.monotonic() - 1)
    assert (got.status, got.exact_model, got.clock_free) == ("HEURISTIC", True, False)
    assert got.lower_bound <= got.hottest <= got.greedy_hottest


def test_a_deadline_that_stops_cpsat_marks_the_answer() -> None:
    """The same layer with 5 deterministic seconds but a deadline 0.5 s away: the wall clock
    stops CP-SAT (well before its deterministic budget), so the answer is clock-dependent."""
    from solver.loads import zipf_loads

    got = place_experts(zipf_loads(32, 1.01), 10, 8, time_limit_s=5.0, workers=1,
                        deadline=time.monotonic() + 0.5)
    assert got.status in ("FEASIBLE", "UNKNOWN") and got.clock_free is False
    assert got.lower_bound <= got.hottest <= got.greedy_hottest


def test_planner_mode_on_a_large_layer_is_heuristic_and_not_exact() -> None:
    from solver.loads import zipf_loads

    got = place_experts(zipf_loads(96, 1.01), 16, 16, workers=1, polish_restricted=False)
    assert got.status == "HEURISTIC" and got.exact_model is False and got.clock_free is True


# -- the heuristic ---------------------------------------------------------------------------------


def test_the_heuristic_ends_with_exchange_rounds() -> None:
    """The twelve experts of the pack test, no redundant slots: LPT and descent stop at 158,
    the final exact exchanges reach the bound 157."""
    loads = np.array(sorted([50, 5, 10, 6, 48, 22, 35, 3, 59, 39, 17, 20], reverse=True))
    greedy = greedy_placement(loads, 2, 0)
    assert greedy.hottest > 157
    ranks = placement.heuristic_placement(loads, 2, 0, greedy, 157)
    assert int(rank_loads_of(loads, ranks).max()) == 157
    assert sorted(e for r in ranks for e in r) == list(range(12))


def test_pack_forwards_its_seed_to_the_exchanges() -> None:
    """64 experts on 4 ranks (more replicas per rank than one exchange takes, so the seed picks
    them): pack is LPT then improve_by_swaps with the same rounds and seed."""
    from solver.baselines import lpt_pack

    loads = np.random.default_rng(0).integers(1, 100000, size=64)
    ones = np.ones(64, dtype=np.int64)
    ranks, _ = lpt_pack([(e, int(loads[e])) for e in range(64)], 4, 16)
    experts = np.array([e for r in ranks for e in r], dtype=np.int64)
    rank_of = np.repeat(np.arange(4), 16)
    outcomes = set()
    for seed in (0, 7):
        by_hand = placement.improve_by_swaps(loads[experts], experts, rank_of, 4, rounds=2,
                                             seed=seed)
        want = tuple(tuple(sorted(experts[by_hand == r].tolist())) for r in range(4))
        assert pack(loads, ones, 4, rounds=2, seed=seed) == want
        outcomes.add(want)
    assert len(outcomes) == 2  # premise: the seed matters here


# -- the measuring command ---------------------------------------------------------------------


def test_the_measuring_command_prints_one_row_per_ep(capsys) -> None:
    from solver.loads import zipf_loads

    placement._main(["--experts", "16", "--redundant", "0", "--alpha", "1.2", "--ep", "2", "3",
                     "--time-limit", "0.05", "--workers", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "| E | R | ep | greedy | placed | lower bound | gap | status | optimal | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    r = place_experts(zipf_loads(16, 1.2), 2, 0, time_limit_s=0.05, workers=1)
    gap = (r.hottest - r.lower_bound) / r.lower_bound
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:9] == ["16", "0", "2", str(r.greedy_hottest), str(r.hottest),
                         str(r.lower_bound), f"{gap:.4%}", r.status,
                         "yes" if r.optimal else "no"]
    assert float(cells[9]) >= 0
    assert lines[3] == "| 16 | 0 | 3 | — | — | — | — | ep does not divide E + R = 16 | — | — |"
    assert len(lines) == 4


def test_the_measuring_commands_defaults_and_help(monkeypatch, capsys) -> None:
    from solver import loads as loads_module

    calls = []

    def fake_place(loads, ep, redundant, *, time_limit_s, workers):
        calls.append((len(loads), ep, redundant, time_limit_s, workers))
        return PlacementResult(ranks=(), hottest=12, lower_bound=10, greedy_hottest=15,
                               optimal=False, status="FEASIBLE")

    zipf_args = []
    monkeypatch.setattr(loads_module, "zipf_loads",
                        lambda e, a: zipf_args.append((e, a)) or np.ones(e, dtype=np.int64))
    monkeypatch.setattr(placement, "place_experts", fake_place)
    placement._main([])
    out = capsys.readouterr().out.splitlines()
    assert zipf_args == [(256, 1.01)]
    # 256 + 32 = 288 slots: 64 does not divide them
    assert calls == [(256, ep, 32, 1.0, 2) for ep in (8, 16, 32)]
    assert out[2].startswith("| 256 | 32 | 8 | 15 | 12 | 10 | 20.0000% | FEASIBLE | no | ")
    assert out[5] == "| 256 | 32 | 64 | — | — | — | — | ep does not divide E + R = 288 | — | — |"
    with pytest.raises(SystemExit):
        placement._main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m solver.placement")
    assert " Time place_experts on one power-law layer for several ep (docs/placement.md). " \
        in text
    # each option with its own help, word for word
    assert ("--experts EXPERTS routed experts E --redundant REDUNDANT redundant slots R "
            "--alpha ALPHA power-law exponent --ep EP [EP ...] EP degrees --time-limit "
            "TIME_LIMIT seconds per solve --workers WORKERS CP-SAT workers") in text


def test_the_measuring_command_skips_only_the_ep_that_do_not_divide(monkeypatch,
                                                                     capsys) -> None:
    """E = 6, R = 2: 8 slots. ep 3 does not divide them (its row says so and the next ep still
    runs); 8 and 4 do (with E − R = 4, 8 would not). The time column is the solve's own."""
    calls = []

    def fake_place(loads, ep, redundant, *, time_limit_s, workers):
        calls.append(ep)
        return PlacementResult(ranks=(), hottest=12, lower_bound=10, greedy_hottest=15,
                               optimal=True, status="OPTIMAL")

    monkeypatch.setattr(placement, "place_experts", fake_place)
    start = time.perf_counter()
    placement._main(["--experts", "6", "--redundant", "2", "--ep", "3", "8", "4"])
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out.splitlines()
    assert calls == [8, 4]
    assert out[2] == "| 6 | 2 | 3 | — | — | — | — | ep does not divide E + R = 8 | — | — |"
    for line, ep in zip(out[3:], (8, 4), strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:9] == ["6", "2", str(ep), "15", "12", "10", "20.0000%", "OPTIMAL", "yes"]
        assert 0 <= float(cells[9]) <= elapsed + 0.005


def test_a_time_limit_must_be_positive() -> None:
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"^time_limit_s must be > 0, got "):
            place_experts(LOADS, 2, time_limit_s=bad)


def test_replica_counts_are_integers() -> None:
    counts = replica_counts(4, ((0, 1, 3), (1, 2, 3)))
    assert counts.dtype == np.int64 and counts.tolist() == [1, 2, 1, 2]


def test_the_replicated_total_is_exact_up_to_the_dp_budget() -> None:
    """Two experts (1000 and 7) and 300 extra slots: 2·301² cells, well inside DP_BUDGET, so the
    least total over every split n + m = 302 (brute force), not the fallback sum of loads."""
    from solver.placement import DP_BUDGET, least_replicated_total

    assert 2 * 301 ** 2 <= DP_BUDGET < 2 * 301 ** 3
    want = min(n * -(-1000 // n) + (302 - n) * -(-7 // (302 - n)) for n in range(1, 302))
    total, counts = least_replicated_total(np.array([1000, 7]), 302, 1000, 400)
    assert total == want > 1007
    assert counts.sum() == 302 and total == sum(
        int(c) * -(-load // int(c)) for c, load in zip(counts, (1000, 7), strict=True))


def test_the_exact_search_is_logged_at_debug_level(caplog) -> None:
    """What CP-SAT did, for whoever turns on debug logging (the case of
    test_cpsat_proves_a_bound_above_the_analytic_one)."""
    import logging
    import re

    caplog.set_level(logging.DEBUG, logger="solver.placement")
    place_experts(np.array([21, 15, 10, 4]), 2, 2, workers=1)
    [message] = [r.getMessage() for r in caplog.records if r.name == "solver.placement"]
    assert re.fullmatch(r"placement E=4 R=2 ep=2: OPTIMAL objective=28(\.0)? bound=28(\.0)? "
                        r"greedy=\d+ lower_bound=25 wall=\d+\.\d{3}s deterministic=\d+\.\d{3}",
                        message), message


def test_a_layer_without_load_replicates_nothing() -> None:
    from solver.placement import least_replicated_total

    total, counts = least_replicated_total(np.zeros(4, dtype=np.int64), 6, 0, 2)
    assert total == 0 and counts.tolist() == [1, 1, 1, 1]
    assert least_replicated_total(np.array([0, 3]), 2, 0, 2) is None


def test_planner_mode_past_its_deadline_is_not_clock_free() -> None:
    """The planner's mode on a large layer answers with the heuristic; when the deadline passed
    during it, the answer depends on the clock (and is not cached)."""
    from solver.loads import zipf_loads

    got = place_experts(zipf_loads(96, 1.01), 16, 16, workers=1, polish_restricted=False,
                        deadline=time.monotonic() - 1)
    assert got.status == "HEURISTIC" and got.exact_model is False and got.clock_free is False


@pytest.mark.parametrize("experts", [96, 128], ids=["feasible", "restricted-optimal"])
def test_the_restricted_models_optimum_is_no_proof(experts: int) -> None:
    """96 or 128 power-law experts, 16 redundant slots on 16 ranks: too large for the exact
    model, so CP-SAT only polishes within restricted replica counts (stopping FEASIBLE, or
    OPTIMAL for that restricted model); either way the answer is optimal only if it meets the
    proved lower bound (here it does not)."""
    from solver.loads import zipf_loads

    got = place_experts(zipf_loads(experts, 1.01), 16, 16, workers=1, time_limit_s=0.2)
    assert got.exact_model is False and got.hottest > got.lower_bound  # premise
    assert got.optimal is False


def test_the_best_exchange_against_brute_force() -> None:
    """The heuristic's exact exchange between the hottest rank and another: w of the pooled 2w
    replicas go to the hot side, minimising the larger side; None when no split beats the
    current one. Checked against every split of random small pools (fixed seed)."""
    import itertools

    from solver.placement import _best_exchange

    rng = np.random.default_rng(7)
    found = none = 0
    for _ in range(60):
        width = int(rng.integers(1, 5))
        hot = rng.integers(1, 100, size=width)
        other = rng.integers(1, 100, size=width)
        hot_rest, other_rest = int(rng.integers(0, 150)), int(rng.integers(0, 150))
        pool = np.concatenate([hot, other])
        total = int(pool.sum())
        current = max(hot_rest + int(hot.sum()), other_rest + int(other.sum()))
        best = min(max(hot_rest + s, other_rest + total - s)
                   for s in (int(pool[list(c)].sum())
                             for c in itertools.combinations(range(2 * width), width)))
        got = _best_exchange(hot, other, hot_rest, other_rest)
        if best >= current:
            assert got is None
            none += 1
            continue
        larger, to_hot = got
        s = int(pool[to_hot].sum())
        assert int(to_hot.sum()) == width
        assert larger == best == max(hot_rest + s, other_rest + total - s)
        found += 1
    assert found > 10 and none > 0  # both outcomes exercised
