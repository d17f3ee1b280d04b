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


# -- disaggregated serving: the prefill pool's queue and the KV transfer ----------------------
#
# docs/cost-model.md, "Disaggregated serving". A prefill pool of ``replicas`` instances, each
# with ``pp`` pipeline microbatches of ``dp`` attention-DP ranks, is ``replicas·pp·dp`` servers;
# a server prefills ``tokens`` prompt tokens per round (``pp`` steps of ``step_ns``: the
# slowest stage, the hop and the step overhead). Requests arrive at the planned rate λ
# (Poisson, FCFS); a typical prompt needs ``input_len / tokens`` rounds of service, a fixed
# number: an M/D/1 queue per server, as in the aggregated model.


def planned_request_rate(min_output_tokens_per_s: float, output_len: int) -> Fraction:
    """λ, requests/s: the total-rate target over the output length (exact)."""
    return Fraction(min_output_tokens_per_s) / output_len


def prefill_step_ns(slowest_ns: int, pp: int, hop_ns: int, overhead_ns: int) -> int:
    """The cadence of a prefill pool: one step of its slowest stage, hop and overhead."""
    return slowest_ns + (hop_ns if pp > 1 else 0) + overhead_ns


def prefill_capacity(replicas: int, dp: int, tokens: int, step_ns: int) -> Fraction:
    """Input tokens/s a prefill pool sustains (exact)."""
    return Fraction(replicas * dp * tokens * NS_PER_S, step_ns)


def prefill_load(request_rate: Fraction, input_len: int, replicas: int, dp: int, tokens: int,
                 step_ns: int) -> Fraction:
    """ρ: the planned input tokens/s over the pool's capacity."""
    return request_rate * input_len / prefill_capacity(replicas, dp, tokens, step_ns)


def prefill_wait_ns(rho: Fraction, input_len: int, tokens: int, pp: int, step_ns: int
                    ) -> Fraction | None:
    """Mean wait for a prefill server (M/D/1, Pollaczek–Khinchine: ρ·S / (2(1 − ρ)) with the
    service ``S = input_len/tokens`` rounds of ``pp·step_ns``); None when ρ ≥ 1."""
    if rho >= 1:
        return None
    service = Fraction(input_len, tokens) * pp * step_ns
    return rho * service / (2 * (1 - rho))


def prefill_own_ns(max_input: int, tokens: int, round_full_ns: int) -> int:
    """A maximum-length prompt's own prefill: ``⌈max_input / tokens⌉`` rounds, each its own
    step carrying it through every stage (:func:`round_ns`)."""
    return math.ceil(max_input / tokens) * round_full_ns


def prefill_ttft_ns(wait_ns: Fraction, own_ns: int) -> int:
    """Queueing plus the prompt's own prefill, whole nanoseconds (the KV transfer is added by
    the caller: it depends on both pools)."""
    return math.ceil(wait_ns) + own_ns


def prefill_replicas_needed(request_rate: Fraction, input_len: int, dp: int, tokens: int,
                            pp: int, step_ns: int, own_ns: int, budget_ns: int | None
                            ) -> int | None:
    """The fewest prefill instances with ρ < 1 and ``prefill_ttft_ns <= budget_ns`` (the exact
    inverse: with ``a = ρ·replicas``, the wait is ``a·S / (2(replicas − a))``, so the budget
    holds iff ``replicas >= a + a·S / (2·(budget − own))``); None when no count does."""
    a = request_rate * input_len * step_ns / (dp * tokens * NS_PER_S)
    if budget_ns is None:
        return math.floor(a) + 1
    slack = budget_ns - own_ns
    if slack <= 0:
        return None
    service = Fraction(input_len, tokens) * pp * step_ns
    return max(1, math.ceil(a + a * service / (2 * slack)))


def kv_transfer_ns(layer_bytes: list[float], streams: int, bandwidth_bytes_s: float,
                   latency_s: float, layer_compute_ns: list[int] | None) -> int:
    """The exposed part of one request's KV transfer, ns. Each layer's bytes go over
    ``streams`` links in parallel at ``bandwidth_bytes_s`` each. Without overlap
    (``layer_compute_ns`` None) the whole transfer is exposed. Layer-wise, layer ``l`` leaves
    once its compute in the prompt's last step is done and the link is free: a two-machine flow
    shop with the layers in order, whose transfers end ``max_j (Σ_{l>=j} x_l − Σ_{l>j} c_l)``
    after the compute does (the exact completion time of the ordered flow shop). Plus one
    latency."""
    x = [b / (streams * bandwidth_bytes_s) for b in layer_bytes]
    if layer_compute_ns is None:
        exposed = sum(x)
    else:
        c = [v / NS_PER_S for v in layer_compute_ns]
        exposed, tail_x, tail_c = 0.0, 0.0, 0.0
        for j in range(len(x) - 1, -1, -1):  # suffix sums: Σ_{l>=j} x, Σ_{l>j} c
            tail_x += x[j]
            exposed = max(exposed, tail_x - tail_c)
            tail_c += c[j]
    return math.ceil((latency_s + exposed) * NS_PER_S - 1e-6)
