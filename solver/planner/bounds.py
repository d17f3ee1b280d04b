"""Bounds that hold for every plan of any size: they prove a target out of reach without
enumerating an unbounded plan space, and cap the instance sizes worth enumerating.

- **Tokens/s per GPU.** Per output token an instance does at least ``(1 + input/output)`` passes
  of every token through the layers' weight GEMMs (the decode token and its share of prefill
  tokens), ``2·active_params`` FLOPs each, and reads the token's KV cache at the mean context once.
  Every kernel runs no faster than the datasheet (``time >= max(FLOPs / peak, bytes / HBM)`` for
  measured curves and the roofline alike) and TP/EP only add work, so the GPU-time per output
  token is at least ``max(FLOPs / peak, KV bytes / HBM)`` and tokens/s per GPU at most its
  inverse.
- **Instance size.** An instance's rate is ``batch / TPOT`` with ``TPOT >= pp · overhead``, so at
  ``gpus_per_instance`` GPUs its rate per GPU is at most ``max_batch / (overhead · gpus)``: a
  per-GPU target caps the size of any instance that can meet it.
- **TPOT** is at least one step's overhead.
- **Total rate.** Per ``(tp, cp)`` the same floor bounds tokens/s per GPU by
  ``max_s s / (A(s) · tp · cp)``; the largest over the pairs allowed bounds every plan, so a
  total-rate target needs at least ``rate / that`` GPUs (:func:`gpu_floor`) — INFEASIBLE at once
  when that is above max GPUs.
- **Per (tp, cp).** Attention, the dense FFN, norms, TP/CP communication and the embedding and
  LM head do the same work on a GPU whatever ``dp``, ``ep``, ``etp`` or ``pp``: one microbatch's
  step through all layers costs at least their sum ``A(s)``, and ``TPOT = pp·(M + …) >= A(s)``.
  So tokens/s per GPU is at most ``s / (A(s) · tp · cp)`` (the instance emits ``dp·q <= dp·pp·s``
  tokens per TPOT on ``pp·tp·cp·dp`` GPUs) for every grid with that ``(tp, cp)``, and a TPOT target
  needs ``A(s) <= max TPOT``: a ``(tp, cp)`` that cannot meet the targets is excluded at every
  size — that makes an otherwise unbounded search finite.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from solver import timing
from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.params import embedding_params, kv_bytes_per_token, layer_params
from solver.planner.goals import Goals
from solver.schema import MAX_GPUS, Grid


def rate_per_gpu_ceiling(prep: Prepared) -> float:
    """Output tokens/s per GPU no plan of this instance exceeds."""
    m, wl, hw = prep.model, prep.instance.workload, prep.instance.hardware
    active = sum(layer_params(m, i).active for i in range(m.num_layers))
    passes = 1 + wl.input_len / wl.output_len
    flops = 2.0 * active * passes
    peak = max(hw.peak_tflops.values()) * 1e12
    kv_bytes = wl.mean_context * kv_bytes_per_token(m)
    # the LM head runs for the decode token
    flops += 2.0 * (embedding_params(m) if m.tie_embeddings else m.vocab_size * m.hidden_size)
    seconds = max(flops / peak, kv_bytes / (hw.hbm_tb_s * 1e12))
    return 1.0 / seconds


def unreachable(prep: Prepared, goals: Goals) -> str | None:
    """Why no plan of any size can meet ``goals``, or None when these bounds cannot tell."""
    floor = gpu_floor(prep, goals)
    cap = min(goals.max_gpus or MAX_GPUS, MAX_GPUS)
    if floor > cap:
        return (f"min_output_tokens_per_s = {goals.min_rate_total:g} needs at least {floor:,} "
                f"GPUs, above {'max_gpus' if goals.max_gpus else 'the limit of'} {cap:,} (no "
                "GPU of any allowed grid emits more than "
                f"{goals.min_rate_total / floor:.4g} tokens/s at the workload's batch range)")
    if goals.min_rate_per_gpu is not None:
        ceiling = rate_per_gpu_ceiling(prep)
        if goals.min_rate_per_gpu > ceiling:
            return (f"min_output_tokens_per_s_per_gpu = {goals.min_rate_per_gpu:g} is above "
                    f"{ceiling:.4g}, the most any plan can reach on this GPU (each output token "
                    "costs at least its share of the weight FLOPs and one read of its KV cache)")
    overhead = prep.cm.overhead_ns
    if goals.tpot_ns is not None and goals.tpot_ns < overhead:
        return (f"max_tpot_s = {goals.tpot_ns / 1e9:g} is below one engine step's overhead "
                f"({overhead / 1e9:g} s)")
    return None


def size_cap(prep: Prepared, goals: Goals) -> int:
    """No instance larger than this can meet ``goals``."""
    cap = min(goals.max_gpus or MAX_GPUS, MAX_GPUS)
    overhead = prep.cm.overhead_ns
    if goals.min_rate_per_gpu is not None and overhead > 0:
        _, bmax = prep.instance.workload.batch_bounds
        limit = Fraction(bmax * timing.NS_PER_S) / (Fraction(goals.min_rate_per_gpu) * overhead)
        cap = min(cap, int(limit))
    return cap


#: Terms whose work does not depend on the expert degrees or the pipeline.
_ATTENTION_SIDE = ("attn_proj", "attn_core", "ffn_dense", "norms", "tp_comm", "cp_comm")


def attention_floor_ns(prep: Prepared, tp: int, cp: int, s_max: int) -> np.ndarray:
    """``A(s)`` for ``s = 1..s_max``: the non-expert work of one average step of every layer
    (with the embedding, LM head and step overhead) on a GPU of a ``(tp, cp)`` grid, ns."""
    cm, wl = prep.cm, prep.instance.workload
    grid = Grid(tp, cp, 1, 1, 1, tp * cp, 1)  # no expert parallelism: no dispatch
    s = np.arange(1, s_max + 1, dtype=np.float64)
    chunk = np.maximum(cm.budget - s, 0.0)
    share = timing.prefill_share(s, wl.input_len, wl.output_len, cm.budget)
    total = np.zeros(s_max)
    by_kind: dict[int, np.ndarray] = {}
    for layer in range(prep.model.num_layers):
        kind = cm.kind[layer]
        if kind not in by_kind:
            hot = _no_expert(prep, layer)
            parts = []
            # the least of pricing the step whole and as two halves (two-batch overlap)
            for splits in ((1, 2) if cm.two_batch else (1,)):
                dec = cm.layer_terms(layer, grid, hot, s, 0 * s, 0.0, splits=splits)
                full = cm.layer_terms(layer, grid, hot, s, chunk, (wl.input_len + 1) / 2,
                                      splits=splits)
                d = sum(v for k, v in dec.items() if k in _ATTENTION_SIDE)
                f = sum(v for k, v in full.items() if k in _ATTENTION_SIDE)
                parts.append(np.where(share < 1, share * f + (1 - share) * d, np.inf))
            by_kind[kind] = np.minimum.reduce(parts)
        total = total + by_kind[kind]
    ex = cm.stage_extras(grid, 0.0, s_max)
    seconds = total + np.where(share < 1, share * (ex.terms["full"]["embedding"]
                                                   + ex.terms["full"]["lm_head"])
                               + (1 - share) * (ex.terms["decode"]["embedding"]
                                                + ex.terms["decode"]["lm_head"]), np.inf)
    finite = np.isfinite(seconds)
    out = np.full(s_max, timing.NEVER, dtype=np.int64)
    out[finite] = np.floor(seconds[finite] * timing.NS_PER_S).astype(np.int64)
    return out + cm.overhead_ns


def _floors(prep: Prepared) -> dict[tuple[int, int], np.ndarray]:
    """``A(s)`` of every ``(tp, cp)`` of the space, for ``s`` up to what a rank can hold, cached
    on the instance's preparation (several goal variants share it)."""
    cache = prep.__dict__.setdefault("_attention_floors", {})
    if not cache:
        space = prep.space
        s_max = max(1, min(space.s_stable, space.bmax))
        for tp, cp in sorted({(tp, cp) for tp, cp, _, _ in space._factors}):
            cache[tp, cp] = attention_floor_ns(prep, tp, cp, s_max)
    return cache


def rate_per_gpu_floor_bound(prep: Prepared, excluded: set[tuple[int, int]] = frozenset()
                             ) -> float:
    """Tokens/s per GPU no plan exceeds, by the attention floor: ``max s·1e9 / (A(s)·tp·cp)``
    over the ``(tp, cp)`` pairs not excluded (0 when none is left)."""
    best = 0.0
    for (tp, cp), a in _floors(prep).items():
        if (tp, cp) in excluded:
            continue
        s = np.arange(1, len(a) + 1, dtype=np.float64)
        ok = a < timing.NEVER
        if ok.any():
            best = max(best, float((s[ok] * timing.NS_PER_S / (a[ok] * tp * cp)).max()))
    return best


def gpu_floor(prep: Prepared, goals: Goals) -> int:
    """GPUs every plan meeting the total-rate target has at least (1 without that target)."""
    if goals.min_rate_total is None:
        return 1
    ceiling = min(rate_per_gpu_floor_bound(prep), rate_per_gpu_ceiling(prep))
    if ceiling <= 0:
        return MAX_GPUS + 1
    # float slack in the safe direction: never above the exact bound
    return max(1, int(np.ceil(goals.min_rate_total * (1 - 1e-9) / ceiling)))


def _no_expert(prep: Prepared, layer: int) -> HotRank | None:
    """A hot rank with no load: the expert terms vanish (they are not part of ``A``)."""
    return HotRank(0, 1) if prep.cm.moe[layer] else None


def excluded_tp_cp(prep: Prepared, goals: Goals) -> set[tuple[int, int]]:
    """The ``(tp, cp)`` pairs with which no grid of any size meets the per-GPU rate and TPOT
    targets."""
    if goals.min_rate_per_gpu is None and goals.tpot_ns is None:
        return set()
    out = set()
    for (tp, cp), a in _floors(prep).items():
        s_max = len(a)
        ok = a < timing.NEVER
        if goals.tpot_ns is not None:
            ok &= a <= goals.tpot_ns
        if goals.min_rate_per_gpu is not None:
            s = np.arange(1, s_max + 1)
            with np.errstate(divide="ignore"):
                ok &= s * timing.NS_PER_S >= goals.min_rate_per_gpu * a * tp * cp * (1 - 1e-9)
        if not ok.any():
            out.add((tp, cp))
    return out


def step_attention_floor_ns(prep: Prepared, tp: int, cp: int, n_dec: np.ndarray,
                            n_pf: np.ndarray, pairs: float) -> np.ndarray:
    """Σ_layers of the attention-side terms of a step with ``n_dec`` decode and ``n_pf`` prefill
    tokens (attention, dense FFN, norms, TP/CP communication: the same on every GPU of a
    ``(tp, cp)`` grid whatever its other degrees), the least of pricing the step whole and as two
    halves; ns, rounded down (a lower bound on every such grid's step; the two-pool planner's
    pools use it, :mod:`solver.planner.disagg_decode` and :mod:`solver.planner.disagg_prefill`)."""
    cm = prep.cm
    grid = Grid(tp, cp, 1, 1, 1, tp * cp, 1)
    total = np.zeros(len(n_pf))
    by_kind: dict[int, np.ndarray] = {}
    for layer in range(prep.model.num_layers):
        kind = cm.kind[layer]
        if kind not in by_kind:
            hot = _no_expert(prep, layer)
            parts = []
            for splits in ((1, 2) if cm.two_batch else (1,)):
                t = cm.layer_terms(layer, grid, hot, n_dec, n_pf, pairs, splits=splits)
                parts.append(sum(v for k, v in t.items() if k in _ATTENTION_SIDE))
            by_kind[kind] = np.minimum.reduce(parts)
        total = total + by_kind[kind]
    return np.floor(total * timing.NS_PER_S).astype(np.int64)
