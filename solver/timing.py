"""The one timing source: TPOT, TTFT, rates, and their exact inverses for the planner.

The estimator, the verifier, the reference search and the CP-SAT planner call these functions and
nothing else to turn stage step times into the figures users see; the planner's caps are the
exact inverses defined next to each forward formula, so a plan at the edge of a target is judged
the same everywhere. Times are integer nanoseconds; comparisons with targets are exact rationals.

The serving model (docs/cost-model.md, "Serving semantics"): an aggregated engine with continuous
batching and chunked prefill. Each attention-DP rank of each of the ``pp`` pipeline microbatches
decodes ``s`` sequences per step and has a token budget ``N`` per step. Requests arrive at the
rate that keeps ``batch`` sequences decoding: ``λ = batch / (output_len · TPOT)``, so each
microbatch must prefill ``s · input_len / output_len`` prompt tokens per step on average. The
scheduler (FCFS) gives a waiting prompt the whole free budget ``N − s``, so a share

    ρ(s) = s · input_len / (output_len · (N − s))

of the steps carry a full chunk and the rest decode only (``ρ ≥ 1``: the queue never empties).

- **Average step** of a stage: ``ρ · full + (1 − ρ) · decode``; ``M`` is the slowest stage's.
- **TPOT** ``= pp · (M + hop + overhead)``: every microbatch passes every stage once per token,
  and each step pays the engine's scheduling overhead.
- **Rate** of an instance ``= batch / TPOT`` tokens/s, so batch × tokens/s per user (1/TPOT) is
  the instance's rate by construction.
- **TTFT at load** of a maximum-length prompt, in *rounds* (a microbatch's trip through the
  pipeline: its own full step at the slowest stage, ``M_full``, plus ``pp − 1`` average steps):
  wait for the prefill server (M/D/1: Poisson arrivals, a deterministic service of
  ``S = input_len / (N − s)`` rounds, utilisation ρ, mean wait ``ρ·S / (2(1 − ρ))``,
  Pollaczek–Khinchine), then ``⌈max_input / (N − s)⌉`` rounds of its own chunks.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

NS_PER_S = 1_000_000_000
#: A time that never comes (a saturated prefill queue); far below int64's limit so sums of a few
#: hundred of them still compare correctly.
NEVER = 1 << 52


# -- the prefill queue -------------------------------------------------------------------------

def prefill_share(s: np.ndarray | int, input_len: int, output_len: int, budget: int
                  ) -> np.ndarray:
    """ρ(s): share of steps carrying a full prefill chunk (array over ``s``; ``inf`` where the
    budget cannot keep up)."""
    s = np.asarray(s, dtype=np.float64)
    free = budget - s
    with np.errstate(divide="ignore", invalid="ignore"):
        share = s * input_len / (output_len * free)
    return np.where(free > 0, share, np.inf)


def prefill_share_exact(s: int, input_len: int, output_len: int, budget: int) -> Fraction | None:
    """ρ(s) as an exact rational; None when the prefill queue is saturated (ρ ≥ 1)."""
    free = budget - s
    if free <= 0:
        return None
    rho = Fraction(s * input_len, output_len * free)
    return rho if rho < 1 else None


def max_stable_s(input_len: int, output_len: int, budget: int) -> int:
    """Largest ``s`` with ρ(s) < 1: ``s·(input + output) < output·N``."""
    return (output_len * budget - 1) // (input_len + output_len)


def ttft_rounds(s: int, input_len: int, max_input: int, output_len: int, budget: int
                ) -> Fraction | None:
    """Rounds from arrival to first token of a maximum-length prompt at load (exact): the M/D/1
    wait plus the prompt's own chunks. None when the queue is saturated."""
    rho = prefill_share_exact(s, input_len, output_len, budget)
    if rho is None:
        return None
    free = budget - s
    service = Fraction(input_len, free)
    wait = rho * service / (2 * (1 - rho))
    return wait + math.ceil(max_input / free)


# -- forward: stage times to user-visible figures ------------------------------------------------

def tpot_ns(slowest_ns: int, pp: int, hop_ns: int, overhead_ns: int) -> int:
    """TPOT from the slowest stage's average step."""
    return pp * (slowest_ns + (hop_ns if pp > 1 else 0) + overhead_ns)


def round_ns(slowest_full_ns: int, slowest_ns: int, pp: int, hop_full_ns: int, hop_ns: int,
             overhead_ns: int) -> int:
    """One trip of a microbatch through the pipeline with its own step carrying a full chunk."""
    if pp == 1:
        return slowest_full_ns + overhead_ns
    return (slowest_full_ns + hop_full_ns + overhead_ns
            + (pp - 1) * (slowest_ns + hop_ns + overhead_ns))


def ttft_ns(rounds: Fraction, round_time_ns: int) -> int:
    return math.ceil(rounds * round_time_ns)


def rate(batch: int, tpot: int) -> float:
    """Output tokens/s of one instance."""
    return batch * NS_PER_S / tpot


def rate_meets(batch: int, tpot: int, gpus: int, min_rate: float) -> bool:
    """Exactly: ``batch / (tpot · 1e-9) / gpus >= min_rate``."""
    return batch * NS_PER_S >= Fraction(min_rate) * gpus * tpot


def replicas_needed(batch: int, tpot: int, min_total_rate: float) -> int:
    """Fewest instances whose summed rate reaches ``min_total_rate`` tokens/s."""
    return max(1, math.ceil(Fraction(min_total_rate) * tpot / (batch * NS_PER_S)))


def seconds_to_ns_floor(seconds: float) -> int:
    """The largest integer ns not above ``seconds`` (exact: floats are converted as rationals)."""
    return math.floor(Fraction(seconds) * NS_PER_S)


# -- inverse: the slowest stage a target allows (the planner's caps) --------------------------

def max_slowest_for_tpot(target_ns: int, pp: int, hop_ns: int, overhead_ns: int) -> int:
    """Largest ``M`` with ``tpot_ns(M, …) <= target_ns``."""
    return target_ns // pp - (hop_ns if pp > 1 else 0) - overhead_ns


def max_slowest_for_rate(batch: int, gpus: int, min_rate: float, pp: int, hop_ns: int,
                         overhead_ns: int) -> int:
    """Largest ``M`` with ``rate_meets(batch, tpot_ns(M, …), gpus, min_rate)``."""
    budget = Fraction(batch * NS_PER_S) / (Fraction(min_rate) * gpus * pp)
    return math.floor(budget) - (hop_ns if pp > 1 else 0) - overhead_ns


def max_slowest_for_replicas(replicas: int, batch: int, min_total_rate: float, pp: int,
                             hop_ns: int, overhead_ns: int) -> int:
    """Largest ``M`` with ``replicas_needed(batch, tpot_ns(M, …), rate) <= replicas``."""
    return max_slowest_for_rate(replicas * batch, 1, min_total_rate, pp, hop_ns, overhead_ns)


def max_round_for_ttft(target_ns: int, rounds: Fraction) -> int:
    """Largest round time with ``ttft_ns(rounds, round) <= target_ns``."""
    return math.floor(target_ns / rounds)
