"""The one cost model: per-layer time of an engine's scheduler step, and memory per GPU.

An aggregated engine with continuous batching and chunked prefill (vLLM, SGLang, TensorRT-LLM)
runs *scheduler steps*. In a step, each attention-DP rank of each pipeline microbatch advances its
``s`` decoding sequences by one token and may add a chunk of prefill tokens, up to the engine's
token budget ``N`` (``max_num_batched_tokens``). The model prices three kinds of step, per layer,
on one GPU, as arrays over ``s = 1..S``:

- ``decode``: ``s`` decode tokens, no prefill;
- ``full``: ``s`` decode tokens plus a full chunk of ``N - s`` prefill tokens of a typical prompt;
- ``full_max``: the same with the chunk taken from a maximum-length prompt (TTFT);

:mod:`solver.timing` turns them into TPOT, TTFT and rates. Everything a layer does is a term:
projections and dense FFN (GEMMs), attention core, routed experts (grouped GEMM of the busiest
expert-parallel rank), expert-parallel dispatch/combine, tensor- and context-parallel
communication, and the part of the dispatch that two-batch overlap hides. Each term's time comes
from :class:`solver.kernels.Kernels` (measured efficiency curves, or the roofline), and the term
remembers which. Times are seconds in the terms and integer nanoseconds once summed per layer
(rounded up); memory is integer bytes. Formulas and sources: docs/cost-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from solver import timing
from solver.kernels import Kernels, Link, math_precision, weight_format
from solver.loads import LOAD_RESOLUTION
from solver.params import (
    LayerParams,
    embedding_params,
    kv_bytes_per_token_per_layer,
    layer_params,
    lm_head_params,
)
from solver.schema import BYTES_PER_ELEMENT, Grid, Instance, ceil_div

NS_PER_S = timing.NS_PER_S
#: Memory is integer bytes; GB in reports are 1e9 bytes.
BYTES_PER_GB = 1_000_000_000

#: Activations a layer keeps live at once, in units of ``hidden`` per token: residual stream,
#: normed input, attention output and one spare for fused kernels.
WORKSPACE_HIDDEN_TENSORS = 4
#: Each sampled position keeps its logits in FP32.
LOGIT_BYTES = 4
#: FP8 dispatch carries one FP32 scale per 128 elements (DeepEP's per-token, per-128 scaling).
FP8_SCALE_BYTES_PER_ELEMENT = 4 / 128

#: Terms whose time two-batch overlap can hide expert-parallel communication behind.
COMPUTE_TERMS = ("attn_proj", "attn_core", "ffn_dense", "moe_experts")
STEPS = ("decode", "full", "full_max")


@dataclass(frozen=True)
class HotRank:
    """The busiest expert-parallel rank of one MoE layer: its share of the layer's routed token
    copies (``units / LOAD_RESOLUTION``) and the expert slots it holds."""

    units: int
    slots: int

    @property
    def share(self) -> float:
        return self.units / LOAD_RESOLUTION


@dataclass(frozen=True)
class LayerCost:
    """One layer on one GPU of a grid, over ``s = 1..len(avg_ns)`` decoding sequences per
    attention-DP rank and microbatch."""

    weight_bytes: int
    kv_seq_bytes: int  # one sequence at the mean context
    kv_max_bytes: int  # one sequence at the maximum context
    avg_ns: np.ndarray  # int64: the average scheduler step (timing.prefill_share mixes the two)
    full_max_ns: np.ndarray  # int64: a step carrying a full chunk of a maximum-length prompt
    terms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # step -> term -> s

    @property
    def decode_ns(self) -> np.ndarray:
        return to_ns(sum(self.terms["decode"].values()))


@dataclass(frozen=True)
class StageExtras:
    """Costs that belong to a stage rather than a layer, over the same ``s`` axis."""

    first_avg_ns: np.ndarray  # embedding lookup
    last_avg_ns: np.ndarray  # LM head
    first_full_ns: np.ndarray
    last_full_ns: np.ndarray
    hop_avg_ns: np.ndarray  # one pipeline hop of the step's activations
    hop_full_ns: np.ndarray
    mem_first: int  # embedding
    mem_last: np.ndarray  # LM head + logits of the decode rows, bytes over s
    mem_every: int  # activation workspace + MoE buffers + comm buffers + runtime reserve
    memory_terms: dict[str, int] = field(default_factory=dict)
    terms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def to_ns(seconds: np.ndarray) -> np.ndarray:
    """Seconds to integer nanoseconds, rounded up (tolerating float noise on exact integers);
    a time past ``timing.NEVER`` (or not a number) saturates there instead of wrapping around."""
    ns = np.ceil(np.asarray(seconds, dtype=np.float64) * NS_PER_S - 1e-6)
    return np.where(ns < timing.NEVER, ns, timing.NEVER).astype(np.int64)


def expected_touched(slots: int, assignments: np.ndarray) -> np.ndarray:
    """Expected distinct experts among ``slots`` that ``assignments`` routed token copies touch,
    each copy picking a slot uniformly: ``slots · (1 − (1 − 1/slots)^n)``; never above ``slots``
    nor ``n``."""
    n = np.asarray(assignments, dtype=np.float64)
    if slots <= 0:
        return np.zeros_like(n)
    if slots == 1:
        return np.minimum(1.0, n)
    touched = slots * (1.0 - np.power(1.0 - 1.0 / slots, n))
    return np.minimum(np.minimum(float(slots), touched), n)


def distinct_of(groups: int, picks: int) -> float:
    """Expected distinct groups among ``picks`` uniform picks over ``groups``."""
    if groups <= 1:
        return 1.0
    return groups * (1.0 - (1.0 - 1.0 / groups) ** picks)


class CostModel:
    """The cost model bound to one instance (model, GPU, workload, engine). Per-layer arrays are
    cached by everything they depend on."""

    def __init__(self, instance: Instance, calibration: bool = True):
        m, hw, wl, eng = instance.model, instance.hardware, instance.workload, instance.engine
        self.model, self.hw, self.workload, self.engine = m, hw, wl, eng
        self.k = Kernels(hw, calibration)
        self.w_bytes = BYTES_PER_ELEMENT[m.weight_precision]
        self.e_bytes = BYTES_PER_ELEMENT[m.expert_weight_precision]
        self.a_bytes = BYTES_PER_ELEMENT[m.activation_precision]
        self.w_math = math_precision(hw, m.weight_precision, m.activation_precision)
        self.e_math = math_precision(hw, m.expert_weight_precision, m.activation_precision)
        self.attn_math = math_precision(hw, m.activation_precision, m.activation_precision)
        block = m.weight_block_size
        self.w_fmt = weight_format(hw, m.weight_precision, block, m.activation_precision)
        self.e_fmt = weight_format(hw, m.expert_weight_precision,
                                   block if m.expert_precision in (None, m.weight_precision)
                                   else None, m.activation_precision)
        a = m.attention
        kv = "fp8" if m.kv_precision == "fp8" else "bf16"
        act = "fp8" if m.activation_precision == "fp8" else "bf16"
        self.decode_attn_key = f"attention.generation.{a.kind}.kv{kv}"
        self.prefill_attn_key = (f"attention.context.mla.kv{kv}.by_isl" if a.kind == "mla"
                                 else f"attention.context.gqa.{act}_kv{kv}.by_isl")
        # Kernel calls of the weight GEMMs per layer: fused QKV + output projection (GQA); MLA's
        # fused down-projections, q up-projection, absorbed KV up/down bmm and output.
        self.attn_gemm_calls = 4 if a.kind == "mla" else 2
        self.budget = eng.token_budget
        #: Length of the per-layer arrays: every s a plan can have (below the prefill queue's
        #: limit and the batch range).
        self.s_span = max(1, min(timing.max_stable_s(wl.input_len, wl.output_len, self.budget),
                                 wl.batch_bounds[1]))
        #: Bytes per GPU the engine may allocate: its memory-utilisation fraction of HBM.
        self.memory_budget = math.floor(eng.memory_fraction * hw.hbm_gb * BYTES_PER_GB)
        self.overhead_ns = math.ceil(eng.overhead_us * 1000)
        self.two_batch = eng.overlap == "two_batch"
        self.dispatch_bytes = (1.0 + FP8_SCALE_BYTES_PER_ELEMENT
                               if eng.dispatch_precision == "fp8" else self.a_bytes)
        #: Whose DeepEP measurements to prefer (the engine's own kernels where measured).
        self.deepep_families = ("trtllm", "sglang") if eng.name == "trtllm" else (
            "sglang", "trtllm")
        self.layers: list[LayerParams] = [layer_params(m, i) for i in range(m.num_layers)]
        self.moe = [lp.num_experts > 0 for lp in self.layers]
        sliding = set(m.attention.sliding_layers)
        self.window = [m.attention.sliding_window if i in sliding else None
                       for i in range(m.num_layers)]
        self.kv_token = [kv_bytes_per_token_per_layer(m, i) for i in range(m.num_layers)]
        kinds: dict[tuple, int] = {}
        self.kind = [kinds.setdefault((self.moe[i], self.window[i], self.layers[i],
                                       self.kv_token[i]), len(kinds))
                     for i in range(m.num_layers)]
        self.has_dense_ffn = any(lp.dense_ffn for lp in self.layers)
        self._cache: dict[tuple, LayerCost] = {}
        self._extras_cache: dict[tuple, StageExtras] = {}

    # -- layout ---------------------------------------------------------------------------------

    def link(self, span: int) -> Link:
        """Link of a group of ``span`` consecutive GPUs: intra-node when the span tiles nodes
        exactly (every such group then sits inside one node), otherwise inter-node."""
        gpn = self.hw.gpus_per_node
        return self.k.intra if span <= gpn and gpn % span == 0 else self.k.inter

    def token_sets(self, g: Grid) -> int:
        """Distinct token sets inside one MoE group of ``etp·ep`` GPUs: tokens are replicated
        over a TP group, so a group nested inside one TP group holds one set and a group of
        ``n`` TP groups holds ``n`` (the rules require the two to nest)."""
        span = g.etp * g.ep
        return span // g.tp if span % g.tp == 0 else 1

    # -- attention geometry ---------------------------------------------------------------------

    @cached_property
    def _kv_proj_params(self) -> int:
        a, h = self.model.attention, self.model.hidden_size
        if a.kind != "gqa":
            return 0
        return 2 * h * a.num_kv_heads * a.head_dim + (2 * a.num_kv_heads * a.head_dim
                                                      if a.bias else 0)

    def kv_shard(self, tp: int) -> int:
        """GPUs a layer's KV cache is split over inside a TP group: GQA shards KV heads over
        ``min(tp, kv_heads)`` (replicated beyond), MLA's latent is replicated."""
        a = self.model.attention
        return min(tp, a.num_kv_heads) if a.kind == "gqa" else 1

    def decode_heads(self, tp: int) -> dict[str, float]:
        """KV heads and query-group size one GPU's decode attention kernel sees: GQA ``kv_heads
        / kv_shard`` KV heads and ``(heads / tp) / that`` query heads per KV head; MLA one latent
        and every query head on the GPU."""
        a = self.model.attention
        heads = a.num_heads / tp
        if a.kind == "gqa":
            kv = a.num_kv_heads / self.kv_shard(tp)
            return {"kv_heads": kv, "group": heads / kv}
        return {"kv_heads": 1.0, "group": heads}

    def attn_params_per_gpu(self, lp: LayerParams, tp: int) -> float:
        kv = self._kv_proj_params
        return (lp.attn_sharded - kv) / tp + kv / self.kv_shard(tp) + lp.attn_replicated

    def dense_params_per_gpu(self, lp: LayerParams, tp: int) -> float:
        """Dense FFN, shared experts (TP-sharded) and the router (replicated) on one GPU."""
        return lp.dense_ffn / tp + lp.shared / tp + lp.router

    def _attn_flops_per_pair(self, tp: int) -> float:
        """FLOPs of one (query, key) pair over this GPU's heads in prefill: QKᵀ and PV."""
        a = self.model.attention
        heads = a.num_heads / tp
        if a.kind == "mla":
            return 2 * heads * (a.qk_head_dim + a.v_head_dim)
        return 2 * heads * 2 * a.head_dim

    def _attn_flops_per_key(self, tp: int) -> float:
        """FLOPs of one decode (query, key) pair; MLA attends in the latent space (absorbed)."""
        a = self.model.attention
        heads = a.num_heads / tp
        if a.kind == "mla":
            return 2 * heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
        return 2 * heads * 2 * a.head_dim

    def _context(self, layer: int, ctx: int) -> int:
        w = self.window[layer]
        return ctx if w is None else min(ctx, w)

    # -- one layer, one step --------------------------------------------------------------------

    def layer_terms(self, layer: int, g: Grid, hot: HotRank | None, n_dec: np.ndarray,
                    n_pf: np.ndarray, pairs_per_pf_token: np.ndarray | float, *,
                    splits: int | None = None) -> dict[str, np.ndarray]:
        """Seconds per term of one step of ``layer`` on one GPU, with ``n_dec`` decode and
        ``n_pf`` prefill tokens per attention-DP rank; a prefill token attends to
        ``pairs_per_pf_token`` keys on average. ``splits`` overrides how many micro-batches the
        step runs as (two with two-batch overlap on an expert-parallel MoE layer)."""
        m, wl = self.model, self.workload
        lp = self.layers[layer]
        h = m.hidden_size
        tp, cp = g.tp, g.cp
        n_dec = np.asarray(n_dec, dtype=np.float64)
        n_pf = np.asarray(n_pf, dtype=np.float64)
        if splits is None:
            splits = 2 if self.two_batch and lp.num_experts and g.ep * g.etp > 1 else 1
        dec, pf = n_dec / splits, n_pf / splits  # one micro-batch of two-batch overlap
        tokens = dec + pf / cp  # through this GPU's projections
        attn_p = self.attn_params_per_gpu(lp, tp)
        dense_p = self.dense_params_per_gpu(lp, tp)
        t: dict[str, np.ndarray] = {}
        t["attn_proj"] = splits * self.k.gemm(tokens, attn_p, self.w_bytes, self.a_bytes,
                                              2 * h, self.w_math, self.w_fmt,
                                              self.attn_gemm_calls)
        # attention core: decode reads every key of its sequences; prefill attends causally
        keys = ceil_div(self._context(layer, wl.mean_context), cp)
        kv_tok = self.kv_token[layer] / self.kv_shard(tp)
        dec_flops = dec * keys * self._attn_flops_per_key(tp)
        dec_bytes = dec * keys * kv_tok + 2 * dec * h * self.a_bytes
        pairs = pf * np.asarray(pairs_per_pf_token, dtype=np.float64) / cp
        pf_flops = pairs * self._attn_flops_per_pair(tp)
        ppt = np.asarray(pairs_per_pf_token, dtype=np.float64)
        pf_bytes = (pf / cp) * (kv_tok + 2 * h * self.a_bytes) + np.where(pf > 0, ppt, 0) \
            / cp * kv_tok  # the chunk's prefix KV, streamed once per chunk
        t["attn_core"] = splits * (
            self.k.attention(self.decode_attn_key, dec_flops, dec_bytes, dec * keys * kv_tok,
                             self.attn_math, sequences=dec, **self.decode_heads(tp))
            + self.k.attention(self.prefill_attn_key, pf_flops, pf_bytes, 2 * ppt,
                               self.attn_math))
        ffn_calls = (2 if lp.dense_ffn else 0) + (2 if lp.shared else 0) + (1 if lp.router
                                                                           else 0)
        t["ffn_dense"] = splits * self.k.gemm(tokens, dense_p, self.w_bytes, self.a_bytes,
                                              2 * h, self.w_math, self.w_fmt, ffn_calls) \
            if dense_p else 0 * tokens
        if lp.num_experts:
            assert hot is not None
            moe_tokens = (dec + pf) / cp  # distinct tokens per GPU entering the MoE block
            # DeepEP's low-latency kernels serve decode-only steps, its normal kernels prefill
            t.update(self._moe_terms(lp, g, hot, moe_tokens, splits,
                                     "normal" if np.any(n_pf > 0) else "ll"))
        act = tokens * h * self.a_bytes
        # two residual adds + RMSNorms per layer (and Q/K norms): read two streams, write one
        norm_calls = 2 + (2 if self.model.attention.qk_norm else 0)
        t["norms"] = splits * self.k.elementwise(norm_calls * 3 * act, norm_calls)
        t["tp_comm"] = splits * 2 * self.k.all_reduce(act, tp, self.link(tp))
        if cp > 1:
            cp_link = self.link(tp * cp)
            kv_block = (pf / cp) * kv_tok
            ring = (cp - 1) * self.k.p2p(kv_block + dec * h * self.a_bytes, cp_link)
            t["cp_comm"] = splits * ring
        if splits > 1 and "ep_comm" in t:
            # Two micro-batches through a compute stream, then a communication stream: a
            # two-machine flow shop with two identical jobs finishes in (C + X + max(C, X)) / 2
            # (Johnson 1954), so half of the smaller of the two is hidden.
            compute = sum(t[k] for k in COMPUTE_TERMS if k in t)
            t["overlap"] = -0.5 * np.minimum(t["ep_comm"], compute)
        return t

    def _moe_terms(self, lp: LayerParams, g: Grid, hot: HotRank, moe_tokens: np.ndarray,
                   splits: int, mode: str) -> dict[str, np.ndarray]:
        """The busiest GPU's expert GEMMs and the dispatch/combine that brings its tokens."""
        m = self.model
        h, k = m.hidden_size, lp.top_k
        sets = self.token_sets(g)
        # token copies routed to the busiest EP rank; each of its etp slices computes all of them
        routed = sets * moe_tokens * k * hot.share
        touched = expected_touched(hot.slots, routed)
        width = m.expert_ffn_width / g.etp
        out = {"moe_experts": splits * self.k.grouped_gemm(
            routed, touched, lp.expert / g.etp, self.e_bytes, self.a_bytes, 2 * h + width,
            self.e_math, self.e_fmt)}
        out["ep_comm"] = splits * self._dispatch_combine(g, routed, k, sets, mode)
        return out

    def _dispatch_combine(self, g: Grid, routed: np.ndarray, k: int, sets: int, mode: str
                          ) -> np.ndarray:
        """Dispatch (in the engine's dispatch precision) and combine (BF16) of the token copies
        that leave their rank: copies reach a rank once per token (deduplicated, as DeepEP
        sends them), and the ``1/sets`` that start in the rank's own TP group never move.
        Groups spanning nodes send each token once per remote node over RDMA, then forward
        over NVLink (DeepEP's internode kernels); the two run concurrently."""
        if sets <= 1:
            return np.zeros_like(routed)
        h = self.model.hidden_size
        per_token_ranks = distinct_of(g.ep, k)
        arriving = routed * (per_token_ranks / k) * (sets - 1) / sets
        span, gpn = g.etp * g.ep, self.hw.gpus_per_node
        measured = self._deepep(routed, per_token_ranks / k, mode, ceil_div(span, gpn))
        if measured is not None:
            return measured
        total = 0.0
        for phase, elem_bytes in (("dispatch", self.dispatch_bytes), ("combine", self.a_bytes)):
            nvlink = arriving * h * elem_bytes
            if span <= gpn:
                total = total + self.k.all_to_all(nvlink, self.link(span), mode, phase)
                continue
            nodes = ceil_div(span, gpn)
            sets_per_node = max(1, gpn // g.tp)
            remote_share = (sets - sets_per_node) / (sets - 1)
            rdma = nvlink * remote_share * (distinct_of(nodes, k) / per_token_ranks)
            total = total + np.maximum(self.k.all_to_all(rdma, self.k.inter, mode, phase),
                                       self.k.all_to_all(nvlink, self.k.intra, mode, phase))
        return total

    def _deepep(self, routed: np.ndarray, dedup: float, mode: str, nodes: int
                ) -> np.ndarray | None:
        """Dispatch + combine from measured DeepEP kernels, priced on the bytes the busiest GPU
        receives (itself included) as the measurements count them: one copy per destination
        rank with the normal kernels, one per (token, expert) with the low-latency ones."""
        h = self.model.hidden_size
        copies = routed * (dedup if mode == "normal" else 1.0)
        total = 0.0
        for phase, dtype, elem in (("dispatch", self.engine.dispatch_precision,
                                    self.dispatch_bytes), ("combine", "bf16", self.a_bytes)):
            found = self.k.deepep(self.deepep_families, mode, phase, dtype, nodes)
            if found is None:
                return None
            total = total + np.where(copies > 0, found[1].time(copies * h * elem), 0.0)
        return total

    # -- one layer over s -----------------------------------------------------------------------

    def layer_cost(self, layer: int, g: Grid, hot: HotRank | None, s_max: int) -> LayerCost:
        """``layer`` on one GPU of grid ``g`` for ``s = 1..S`` with ``S >= s_max`` (one array
        length per instance, so every pipeline depth and batch of a stage grid shares one
        evaluation; values do not depend on the length). MoE layers need ``hot``."""
        if not self.moe[layer]:
            hot = None
        key = (self.kind[layer], g.tp, g.cp, g.ep, g.etp, hot)  # dp, edp, pp: not per GPU
        hit = self._cache.get(key)
        if hit is not None and len(hit.avg_ns) >= s_max:
            return hit
        s_max = max(s_max, self.s_span)
        wl = self.workload
        s = np.arange(1, s_max + 1, dtype=np.float64)
        chunk = np.maximum(self.budget - s, 0.0)
        pairs_typ = (wl.input_len + 1) / 2
        pairs_max = (wl.max_input + 1) / 2
        terms = {
            "decode": self.layer_terms(layer, g, hot, s, 0 * s, 0.0),
            "full": self.layer_terms(layer, g, hot, s, chunk, pairs_typ),
            "full_max": self.layer_terms(layer, g, hot, s, chunk, pairs_max),
        }
        share = timing.prefill_share(s, wl.input_len, wl.output_len, self.budget)
        dec = sum(terms["decode"].values())
        full = sum(terms["full"].values())
        with np.errstate(invalid="ignore"):  # inf·0 where the queue saturates: masked out
            avg = np.where(share < 1, share * full + (1 - share) * dec, np.inf)
        cost = LayerCost(
            *self._layer_memory(layer, g, hot),
            avg_ns=_to_ns_or_inf(non_decreasing(avg)),
            full_max_ns=to_ns(non_decreasing(sum(terms["full_max"].values()))),
            terms=terms,
        )
        self._cache[key] = cost
        return cost

    def _layer_memory(self, layer: int, g: Grid, hot: HotRank | None) -> tuple[int, int, int]:
        lp = self.layers[layer]
        params = self.attn_params_per_gpu(lp, g.tp) + self.dense_params_per_gpu(lp, g.tp)
        experts = hot.slots * lp.expert / g.etp if (lp.num_experts and hot) else 0.0
        weights = math.ceil(params * self.w_bytes + experts * self.e_bytes)
        wl = self.workload
        per_token = self.kv_token[layer] / self.kv_shard(g.tp)
        # KV held per sequence: at the mean context where the engine allocates as tokens come,
        # at the whole sequence where it reserves that at admission (TensorRT-LLM)
        held = wl.full_context if self.engine.kv_reserves_full_sequence else wl.mean_context
        kv_seq = math.ceil(ceil_div(self._context(layer, held), g.cp) * per_token)
        kv_max = math.ceil(ceil_div(self._context(layer, wl.max_context), g.cp) * per_token)
        return weights, kv_seq, kv_max

    # -- stage extras ---------------------------------------------------------------------------

    def extras_terms(self, g: Grid, tokens: np.ndarray, rows: np.ndarray
                     ) -> dict[str, np.ndarray]:
        """Seconds of a step's stage-level work on one GPU of ``g``, with ``tokens`` tokens per
        attention-DP rank through the projections and ``rows`` LM-head rows: the embedding
        lookup (first stage), the LM head (last stage) and one pipeline hop (``pp > 1``). The
        aggregated steps (:meth:`stage_extras`) and the pools of a disaggregated deployment
        (:mod:`solver.pools`) price them here."""
        m = self.model
        h = m.hidden_size
        tokens = np.asarray(tokens, dtype=np.float64)
        # the GEMM multiplies by vocab × hidden (the final norm is memory, not GEMM work)
        head_flop_params = embedding_params(m) / g.tp if m.tie_embeddings else \
            m.vocab_size * h / g.tp
        hop = 0 * tokens if g.pp == 1 else self.k.p2p(tokens * h * self.a_bytes,
                                                       self.link(g.gpus_per_instance))
        return {"embedding": self.k.memory_read(tokens * h * self.w_bytes),
                "lm_head": self.k.gemm(np.asarray(rows, dtype=np.float64), head_flop_params,
                                       self.w_bytes, self.a_bytes, h, self.w_math, self.w_fmt),
                "pp_comm": hop}

    def extras_memory(self, g: Grid, max_hot_share: float, step_tokens: float
                      ) -> dict[str, int]:
        """Bytes per GPU of ``g`` that do not belong to a layer, for steps of ``step_tokens``
        tokens per attention-DP rank: activation workspace (with the busiest rank's MoE
        buffers), communication buffers and the runtime's reserve on every stage; the embedding
        on the first, the LM head on the last (logits are per step: the caller adds them)."""
        m, hw = self.model, self.hw
        tp, cp, pp = g.tp, g.cp, g.pp
        h = m.hidden_size
        emb_bytes = math.ceil(embedding_params(m) / tp * self.w_bytes)
        head_params = lm_head_params(m)
        if m.tie_embeddings and pp > 1:  # the last stage needs its own copy of the tied matrix
            head_params += embedding_params(m)
        head_bytes = math.ceil(head_params / tp * self.w_bytes)
        ffn_local = max(
            [m.dense_ffn_width // tp if self.has_dense_ffn else 0]
            + [(m.shared_width * m.num_shared_experts) // tp if m.num_shared_experts else 0]
        )
        workspace = math.ceil(step_tokens * self.a_bytes
                              * (WORKSPACE_HIDDEN_TENSORS * h + 2 * ffn_local))
        moe_buffers = 0
        if any(self.moe):
            routed = self.token_sets(g) * step_tokens / cp * m.top_k * max_hot_share
            moe_buffers = math.ceil(routed * self.a_bytes * (2 * h + 2 * m.expert_ffn_width
                                                              / g.etp))
        comm = 0
        if tp > 1 or pp > 1 or g.ep > 1 or cp > 1 or g.etp > 1:
            comm = math.ceil(2 * step_tokens * h * self.a_bytes)
        reserve = math.ceil(hw.reserved_gb * BYTES_PER_GB)
        return {"activation_workspace": workspace + moe_buffers, "comm_buffers": comm,
                "runtime_reserve": reserve, "embedding": emb_bytes, "lm_head": head_bytes}

    def stage_extras(self, g: Grid, max_hot_share: float, s_max: int) -> StageExtras:
        key = (g, max_hot_share)
        hit = self._extras_cache.get(key)
        if hit is not None and len(hit.mem_last) >= s_max:
            return hit
        s_max = max(s_max, self.s_span)
        m, wl = self.model, self.workload
        tp, cp = g.tp, g.cp
        s = np.arange(1, s_max + 1, dtype=np.float64)
        chunk = np.maximum(self.budget - s, 0.0)

        # Logits are computed for the decode rows and the last position of finishing prompts.
        share = timing.prefill_share(s, wl.input_len, wl.output_len, self.budget)
        terms = {"decode": self.extras_terms(g, s, s),
                 "full": self.extras_terms(g, s + chunk / cp, s + 1)}

        def mixed(name: str) -> np.ndarray:
            with np.errstate(invalid="ignore"):  # inf·0 where the queue saturates: masked
                return non_decreasing(np.where(share < 1, share * terms["full"][name]
                                               + (1 - share) * terms["decode"][name], np.inf))

        # Memory: activation workspace of a full step, the busiest rank's MoE buffers,
        # communication buffers and the runtime's own memory.
        memory = self.extras_memory(g, max_hot_share, self.budget)
        logits = (s * math.ceil(m.vocab_size / tp) * LOGIT_BYTES).astype(np.int64)
        extras = StageExtras(
            first_avg_ns=_to_ns_or_inf(mixed("embedding")),
            last_avg_ns=_to_ns_or_inf(mixed("lm_head")),
            first_full_ns=to_ns(non_decreasing(terms["full"]["embedding"])),
            last_full_ns=to_ns(non_decreasing(terms["full"]["lm_head"])),
            hop_avg_ns=_to_ns_or_inf(mixed("pp_comm")),
            hop_full_ns=to_ns(non_decreasing(terms["full"]["pp_comm"])),
            mem_first=memory["embedding"],
            mem_last=memory["lm_head"] + logits,
            mem_every=(memory["activation_workspace"] + memory["comm_buffers"]
                       + memory["runtime_reserve"]),
            memory_terms=memory,
            terms=terms,
        )
        self._extras_cache[key] = extras
        return extras

    # -- an idle prefill ------------------------------------------------------------------------

    def idle_prefill_terms(self, layer: int, g: Grid, hot: HotRank | None
                           ) -> dict[str, float]:
        """Seconds per term of prefilling one maximum-length prompt through ``layer`` on an idle
        instance, in chunks of the token budget (each chunk attends to the prompt so far)."""
        if not self.moe[layer]:
            hot = None
        chunks = chunk_sizes(self.workload.max_input, self.budget)
        starts = np.concatenate(([0.0], np.cumsum(chunks)[:-1]))
        pairs_per_token = starts + (chunks + 1) / 2
        t = self.layer_terms(layer, g, hot, 0 * chunks, chunks, pairs_per_token)
        return {name: float(v.sum()) for name, v in t.items()}

    def idle_prefill_extras(self, g: Grid) -> dict[str, float]:
        chunks = chunk_sizes(self.workload.max_input, self.budget)
        h = self.model.hidden_size
        head_params = (embedding_params(self.model) if self.model.tie_embeddings
                       else self.model.vocab_size * self.model.hidden_size) / g.tp
        hop = (0.0 if g.pp == 1 else
               float((g.pp - 1) * self.k.p2p(chunks / g.cp * h * self.a_bytes,
                                             self.link(g.gpus_per_instance)).sum()))
        return {
            "embedding": float(self.k.memory_read(chunks / g.cp * h * self.w_bytes).sum()),
            "lm_head": float(self.k.gemm(np.array([1.0]), head_params, self.w_bytes,
                                         self.a_bytes, h, self.w_math, self.w_fmt)[0]),
            "pp_comm": hop,
            "step_overhead": len(chunks) * self.overhead_ns / NS_PER_S,
        }


def non_decreasing(seconds: np.ndarray) -> np.ndarray:
    """A step never gets faster with more sequences: the running maximum over ``s = 1, 2, …``
    (it only lifts the rare points where a measured efficiency curve rises faster than the work;
    the estimate computes the same prefix, so every caller sees the same value at a given s)."""
    return np.maximum.accumulate(np.asarray(seconds, dtype=np.float64))


def chunk_sizes(tokens: int, budget: int) -> np.ndarray:
    """A prompt of ``tokens`` split into chunks of the token budget (the last one shorter)."""
    full, rest = divmod(tokens, budget)
    return np.array([budget] * full + ([rest] if rest else []), dtype=np.float64)


def _to_ns_or_inf(seconds: np.ndarray) -> np.ndarray:
    """Like :func:`to_ns`, with infinite times (a saturated prefill queue) as ``timing.NEVER``."""
    seconds = np.asarray(seconds, dtype=np.float64)
    finite = np.isfinite(seconds)
    out = np.full(seconds.shape, timing.NEVER, dtype=np.int64)
    out[finite] = to_ns(seconds[finite])
    return out
