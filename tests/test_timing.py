"""solver/timing.py: the forward formulas against hand values, and each planner cap as the exact
inverse of its forward formula (the largest slowest-stage time that still meets the target, one
nanosecond more does not)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from solver import timing

pytestmark = pytest.mark.unit

NS = 1_000_000_000
ns = st.integers(0, 10**7)
targets = st.integers(1, 10**12)
pps = st.integers(1, 64)
batches = st.integers(1, 65_536)
gpu_counts = st.integers(1, 65_536)
rates = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)


# -- hand values -----------------------------------------------------------------------------------


def test_tpot_is_pp_trips_of_slowest_stage_hop_and_overhead() -> None:
    assert timing.tpot_ns(1000, 1, 500, 7) == 1007  # no hop without a pipeline
    assert timing.tpot_ns(1000, 3, 500, 7) == 3 * (1000 + 500 + 7)


def test_round_is_one_full_step_and_pp_minus_one_average_steps() -> None:
    assert timing.round_ns(5000, 1000, 1, 80, 50, 7) == 5007
    assert timing.round_ns(5000, 1000, 3, 80, 50, 7) == (5000 + 80 + 7) + 2 * (1000 + 50 + 7)


def test_md1_wait_at_half_utilisation_is_half_the_service() -> None:
    # N = 100, s = 10: free budget 90; ρ = 10·45/(10·90) = 1/2; service S = 45/90 = 1/2 round;
    # M/D/1 wait ρS/(2(1 − ρ)) = S/2 = 1/4; own chunks ⌈200/90⌉ = 3.
    assert timing.prefill_share_exact(10, 45, 10, 100) == Fraction(1, 2)
    assert timing.ttft_rounds(10, 45, 200, 10, 100) == Fraction(13, 4)
    assert timing.ttft_ns(Fraction(13, 4), 1000) == 3250
    assert timing.ttft_ns(Fraction(13, 4), 1001) == 3254  # 3253.25 rounded up


def test_md1_wait_grows_without_bound_near_saturation() -> None:
    # ρ = 0.9: wait = 0.9·S/(2·0.1) = 4.5·S, S = 90/100
    assert timing.prefill_share_exact(1, 90, 1, 101) == Fraction(9, 10)
    assert timing.ttft_rounds(1, 90, 90, 1, 101) == Fraction(9, 2) * Fraction(90, 100) + 1


@pytest.mark.parametrize(("s", "input_len", "output_len", "budget"), [
    (10, 90, 10, 100),  # ρ = 900/900 = 1 exactly
    (10, 100, 10, 100),  # ρ > 1
    (100, 1, 1, 100),  # no free budget
    (150, 1, 1, 100),  # more sequences than the budget
])
def test_saturated_queue(s: int, input_len: int, output_len: int, budget: int) -> None:
    assert timing.prefill_share_exact(s, input_len, output_len, budget) is None
    assert timing.ttft_rounds(s, input_len, input_len, output_len, budget) is None
    assert timing.prefill_share(s, input_len, output_len, budget) >= 1


def test_max_stable_s_by_hand() -> None:
    # ρ(s) < 1 ⟺ s·(128 + 64) < 64·512 = 32768 ⟺ s ≤ 170
    assert timing.max_stable_s(128, 64, 512) == 170
    assert timing.max_stable_s(1000, 1, 1000) == 0  # even one sequence saturates
    assert timing.max_stable_s(1, 1, 2) == 0  # ρ(1) = 1/(1·1) = 1: saturated


def test_rates_by_hand() -> None:
    assert timing.rate(8, 2_000_000) == 4000.0  # 8 tokens every 2 ms
    assert timing.rate_meets(8, 2_000_000, 4, 1000.0)  # 4000/4 = 1000 per GPU
    assert not timing.rate_meets(8, 2_000_001, 4, 1000.0)
    assert timing.replicas_needed(8, 2_000_000, 4000.0) == 1
    assert timing.replicas_needed(8, 2_000_000, 4000.5) == 2
    assert timing.replicas_needed(8, 2_000_000, 1.0) == 1  # never below one


def test_seconds_to_ns_floor_is_exact() -> None:
    assert timing.seconds_to_ns_floor(0.1) == 100_000_000  # 0.1 is slightly above 1/10
    assert timing.seconds_to_ns_floor(0.3) == 299_999_999  # 0.3 is slightly below 3/10
    assert timing.seconds_to_ns_floor(2.0) == 2 * NS


# -- inverses ------------------------------------------------------------------------------------


@SETTINGS
@given(targets, pps, ns, ns)
def test_tpot_cap_is_the_exact_inverse(target: int, pp: int, hop: int, overhead: int) -> None:
    m = timing.max_slowest_for_tpot(target, pp, hop, overhead)
    assert timing.tpot_ns(m, pp, hop, overhead) <= target < timing.tpot_ns(m + 1, pp, hop,
                                                                            overhead)


@SETTINGS
@given(batches, gpu_counts, rates, pps, ns, ns)
def test_rate_cap_is_the_exact_inverse(batch: int, gpus: int, min_rate: float, pp: int, hop: int,
                                       overhead: int) -> None:
    m = timing.max_slowest_for_rate(batch, gpus, min_rate, pp, hop, overhead)
    assume(timing.tpot_ns(m, pp, hop, overhead) > 0)
    assert timing.rate_meets(batch, timing.tpot_ns(m, pp, hop, overhead), gpus, min_rate)
    assert not timing.rate_meets(batch, timing.tpot_ns(m + 1, pp, hop, overhead), gpus, min_rate)


@SETTINGS
@given(st.integers(1, 1000), batches, rates, pps, ns, ns)
def test_replica_cap_is_the_exact_inverse(replicas: int, batch: int, min_total_rate: float,
                                          pp: int, hop: int, overhead: int) -> None:
    m = timing.max_slowest_for_replicas(replicas, batch, min_total_rate, pp, hop, overhead)
    assume(timing.tpot_ns(m, pp, hop, overhead) > 0)
    tpot = timing.tpot_ns(m, pp, hop, overhead)
    assert timing.replicas_needed(batch, tpot, min_total_rate) <= replicas
    slower = timing.tpot_ns(m + 1, pp, hop, overhead)
    assert timing.replicas_needed(batch, slower, min_total_rate) > replicas


@SETTINGS
@given(targets, st.integers(1, 10**6), st.integers(1, 10**6))
def test_ttft_cap_is_the_exact_inverse(target: int, num: int, den: int) -> None:
    rounds = Fraction(num, den)
    r = timing.max_round_for_ttft(target, rounds)
    assert timing.ttft_ns(rounds, r) <= target < timing.ttft_ns(rounds, r + 1)


@SETTINGS
@given(batches, st.integers(1, 10**10), rates)
def test_replicas_needed_is_minimal(batch: int, tpot: int, min_total_rate: float) -> None:
    r = timing.replicas_needed(batch, tpot, min_total_rate)
    want = Fraction(min_total_rate)

    def total(n: int) -> Fraction:  # tokens/s of n instances, exactly
        return Fraction(n * batch * NS, tpot)

    assert r >= 1 and total(r) >= want
    assert r == 1 or total(r - 1) < want


@SETTINGS
@given(st.integers(1, 5000), st.integers(1, 10**5), st.integers(1, 10**5), st.integers(2, 10**5))
def test_prefill_share_float_and_exact_agree(s: int, input_len: int, output_len: int,
                                             budget: int) -> None:
    exact = timing.prefill_share_exact(s, input_len, output_len, budget)
    share = float(timing.prefill_share(s, input_len, output_len, budget))
    if exact is None:
        assert share >= 1
    else:
        assert share < 1
        assert share == pytest.approx(float(exact), rel=1e-15)
        assert exact == Fraction(s * input_len, output_len * (budget - s))


@SETTINGS
@given(st.integers(1, 10**5), st.integers(1, 10**5), st.integers(1, 10**5))
def test_max_stable_s_is_the_boundary_of_rho_below_one(input_len: int, output_len: int,
                                                       budget: int) -> None:
    top = timing.max_stable_s(input_len, output_len, budget)
    assert top >= 0
    if top >= 1:
        assert timing.prefill_share_exact(top, input_len, output_len, budget) is not None
    assert timing.prefill_share_exact(top + 1, input_len, output_len, budget) is None
    # and the array form agrees at both sides
    share = timing.prefill_share(np.array([top, top + 1]), input_len, output_len, budget)
    assert share[1] >= 1 and (top == 0 or share[0] < 1)


@SETTINGS
@given(st.integers(1, 200), st.integers(1, 5000), st.integers(0, 5000), st.integers(1, 2000),
       st.integers(2, 4096))
def test_ttft_rounds_is_md1_wait_plus_own_chunks(s: int, input_len: int, extra: int,
                                                 output_len: int, budget: int) -> None:
    rounds = timing.ttft_rounds(s, input_len, input_len + extra, output_len, budget)
    free = budget - s
    assume(free > 0 and s * input_len < output_len * free)
    rho = Fraction(s * input_len, output_len * free)
    service = Fraction(input_len, free)
    assert rounds == rho * service / (2 * (1 - rho)) + math.ceil(Fraction(input_len + extra,
                                                                          free))
