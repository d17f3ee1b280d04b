"""Per-layer expert loads as integers: how a layer's routed tokens spread over its experts.

Every MoE layer gets one int64 array of length ``num_experts`` that sums to exactly
:data:`LOAD_RESOLUTION` *load units*. A load unit is one millionth of the layer's routed-token
assignments (``batch × top_k`` of them), so the placement model works on exact integers and a
rank's share of the layer's routed tokens is ``rank_load / LOAD_RESOLUTION``. Fractions are rounded
by the largest-remainder method (ties to the lower expert index), so the result is deterministic
and the sum is exact. See docs/placement.md.
"""

from __future__ import annotations

import numpy as np

from solver.schema import ExpertLoad, ModelSpec

#: Load units per MoE layer: a layer's routed-token assignments sum to exactly this many.
LOAD_RESOLUTION = 1_000_000


def largest_remainder(numerators: np.ndarray, denominator: int, total: int) -> np.ndarray:
    """Integers proportional to ``numerators / denominator`` that sum to exactly ``total``.

    Exact integer arithmetic: each share is ``floor(total · numerator / denominator)``, and the
    units still missing go one each to the largest remainders (ties to the lower index).
    ``numerators`` are non-negative integers summing to ``denominator``.
    """
    scaled = [int(n) * total for n in numerators]  # Python ints: no overflow
    shares = np.array([s // denominator for s in scaled], dtype=np.int64)
    remainders = np.array([s % denominator for s in scaled], dtype=object)
    missing = total - int(shares.sum())
    if missing:
        # Stable sort on the negated remainder: largest first, lower index first among equals.
        order = sorted(range(len(scaled)), key=lambda i: -remainders[i])
        shares[order[:missing]] += 1
    return shares


def _normalise_weights(weights: np.ndarray) -> np.ndarray:
    """Float weights → integer loads summing to LOAD_RESOLUTION (largest remainder)."""
    # Weights become exact integers on a fine grid first, so the rounding below is exact integer
    # arithmetic and does not depend on floating-point summation order.
    grid = 1 << 52
    numerators = np.floor(weights / weights.max() * grid).astype(np.int64)
    return largest_remainder(numerators, int(sum(int(n) for n in numerators)), LOAD_RESOLUTION)


def cap_shares(weights: np.ndarray, top_k: int) -> np.ndarray:
    """Shares proportional to ``weights`` with none above ``1/top_k``: a token picks ``top_k``
    *distinct* experts, so one expert receives at most every token, a ``1/top_k`` share of the
    routed copies. Experts over the cap are held at it and the rest rescaled (water-filling)."""
    shares = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    cap = 1.0 / top_k
    fixed = np.zeros(len(shares), dtype=bool)
    while True:
        over = (shares > cap * (1 + 1e-12)) & ~fixed
        if not over.any():
            return shares
        fixed |= over
        rest = 1.0 - cap * fixed.sum()
        free = shares[~fixed]
        shares = np.where(fixed, cap, shares * (rest / free.sum() if free.sum() else 0.0))


def zipf_loads(num_experts: int, alpha: float, top_k: int = 1) -> np.ndarray:
    """Zipf loads ``1 / rank**alpha`` over ranks 1..E, in descending order, in load units, capped
    at ``1/top_k`` of the routed copies (see :func:`cap_shares`)."""
    ranks = np.arange(1, num_experts + 1, dtype=np.float64)
    return _normalise_weights(cap_shares(1.0 / ranks**alpha, top_k))


def layer_loads(model: ModelSpec, load: ExpertLoad) -> list[np.ndarray]:
    """One int64 load array per MoE layer (in ``model.moe_layers`` order), each summing to
    :data:`LOAD_RESOLUTION`.

    - ``uniform``: every expert the same (up to one unit of rounding, given to the lowest indices).
    - ``power_law``: Zipf weights ``1/rank**alpha`` (capped at ``1/top_k``), permuted per layer with
      ``numpy.random.default_rng(load.seed + layer_index)`` (``layer_index`` counts MoE layers
      from 0), so layers differ in which expert is hot but share one multiset of loads.
    - ``measured``: each row of ``load.counts`` normalised.
    """
    num_experts = model.num_experts
    num_moe = len(model.moe_layers)
    if load.kind == "uniform":
        even = largest_remainder(np.ones(num_experts, dtype=np.int64), num_experts, LOAD_RESOLUTION)
        return [even.copy() for _ in range(num_moe)]
    if load.kind == "power_law":
        assert load.alpha is not None  # the schema guarantees it
        descending = zipf_loads(num_experts, load.alpha, model.top_k)
        return [
            descending[np.random.default_rng(load.seed + i).permutation(num_experts)]
            for i in range(num_moe)
        ]
    # measured
    assert load.counts is not None
    if len(load.counts) != num_moe:
        raise ValueError(
            f"expert_load.counts has {len(load.counts)} rows but the model has {num_moe} MoE layers"
        )
    loads = []
    for row in load.counts:
        if len(row) != num_experts:
            raise ValueError(
                f"expert_load.counts has {len(row)} columns but the model has {num_experts} "
                "routed experts"
            )
        counts = np.asarray(row, dtype=np.int64)
        loads.append(largest_remainder(counts, int(sum(row)), LOAD_RESOLUTION))
    return loads


def describe(load: ExpertLoad, model: ModelSpec) -> str:
    """The expert load in words, as every answer states it."""
    if not model.moe_layers:
        return "none (no MoE layers)"
    if load.kind == "uniform":
        return "uniform routing"
    if load.kind == "power_law":
        hot = zipf_loads(model.num_experts, float(load.alpha), model.top_k)
        ratio = float(hot.max()) * model.num_experts / LOAD_RESOLUTION
        return (f"power law alpha = {load.alpha:g} (seed {load.seed}; hottest expert "
                f"{ratio:.1f}x the mean)")
    return f"measured counts ({len(load.counts or ())} MoE layers)"
