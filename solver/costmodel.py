"""The one cost model: memory per GPU, prefill (TTFT), decode step (TPOT) and throughput.

A roofline model: every operation takes ``max(FLOPs / (peak · MFU), bytes / (HBM bw · efficiency))``
and every collective ``hops · latency + bytes / (link bw · efficiency)``. No plan can report more
FLOPs or bytes per second than the hardware's peak times its efficiency. Formulas, units and
sources are in ``docs/cost-model.md``; this module is their only implementation.

The model is evaluated per layer, then per pipeline stage. Times are integers in nanoseconds
(:data:`TIME_RESOLUTION_S`) and memory is integer bytes, rounded up per layer, so that the
estimator, the verifier, the exhaustive reference search and the CP-SAT planner compare exactly
the same integers and never disagree on a plan at the edge of a target.

Conventions (see docs/cost-model.md for why):
- TTFT: one *prefill wave* on an idle instance: each attention-DP rank prefills one request of the
  maximum input length, all ``dp`` requests together, through every stage in turn.
- TPOT: steady-state decode with ``pp`` microbatches of ``ceil(batch / pp)`` sequences in flight;
  a microbatch advances one token every ``pp · (slowest stage + hop)``.
- Throughput: each of the ``batch`` sequences prefills a typical-length input and then emits
  ``output_len`` tokens; prefill waves are assumed to pipeline perfectly across stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

from solver.params import (
    LayerParams,
    embedding_params,
    kv_bytes_per_token_per_layer,
    layer_params,
    lm_head_params,
)
from solver.schema import (
    BYTES_PER_ELEMENT,
    Degrees,
    HardwareSpec,
    ModelSpec,
    Workload,
    ceil_div,
)

#: Times are integer nanoseconds.
TIME_RESOLUTION_S = 1e-9
NS_PER_S = 1_000_000_000
#: Memory is integer bytes; GB in reports are 1e9 bytes.
BYTES_PER_GB = 1_000_000_000

#: Where a GPU lists no rate for a precision, GEMMs run at the first precision of its chain that it
#: does list: MXFP4 experts on H100 run as FP8 GEMMs, FP8 on A100 as BF16 (never at the int8 rate:
#: integer units cannot do floating-point math).
_RATE_FALLBACK: dict[str, tuple[str, ...]] = {
    "mxfp4": ("mxfp4", "fp4", "fp8", "bf16", "fp16", "fp32"),
    "fp4": ("fp4", "mxfp4", "fp8", "bf16", "fp16", "fp32"),
    "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "bf16", "fp16", "fp32"),
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "fp32": ("fp32", "bf16", "fp16"),
}

#: Activations a layer keeps live at once during prefill, in units of ``hidden`` per token:
#: residual stream, normed input, attention output and one spare for fused kernels.
WORKSPACE_HIDDEN_TENSORS = 4
#: Each sampled position keeps its logits in FP32.
LOGIT_BYTES = 4


def effective_tflops(hw: HardwareSpec, precision: str) -> float:
    """Peak dense TFLOPS at ``precision`` (or its fallback, see ``_RATE_FALLBACK``) times MFU.
    A GPU listing none of the chain runs at its slowest listed rate."""
    for p in _RATE_FALLBACK[precision]:
        if p in hw.peak_tflops:
            return hw.peak_tflops[p] * hw.mfu
    return min(hw.peak_tflops.values()) * hw.mfu


def seconds_to_ns_floor(seconds: float) -> int:
    """The largest integer ns not above ``seconds`` (exact: floats are converted as rationals)."""
    return math.floor(Fraction(seconds) * NS_PER_S)


def rate_meets(tokens: int, ns: int, gpus: int, min_rate: float) -> bool:
    """Exactly: ``tokens / (ns · 1e-9) / gpus >= min_rate``."""
    return Fraction(tokens * NS_PER_S) >= Fraction(min_rate) * ns * gpus


def replicas_needed(tokens: int, ns: int, min_total_rate: float) -> int:
    """Fewest instances whose summed rate ``tokens / ns`` reaches ``min_total_rate`` tokens/s."""
    need = Fraction(min_total_rate) * ns / (tokens * NS_PER_S)
    return max(1, math.ceil(need))


# ----------------------------------------------------------------------------------------------
# Per-layer costs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roofline:
    """Effective rates of one GPU, in FLOP/s and byte/s."""

    weight_flops: float
    expert_flops: float
    attn_flops: float
    hbm_bytes_s: float

    def op(self, flops: float, bytes_: float, rate: float) -> float:
        return max(flops / rate, bytes_ / self.hbm_bytes_s)


@dataclass(frozen=True)
class Links:
    """Bandwidth (byte/s, after efficiency) and latency (s) of the link a group uses."""

    bw: float
    lat: float

    def all_reduce(self, bytes_: float, p: int) -> float:
        """Ring all-reduce: 2(p-1) steps, each moving bytes/p."""
        if p <= 1:
            return 0.0
        return 2 * (p - 1) * self.lat + 2 * (p - 1) / p * bytes_ / self.bw

    def all_to_all(self, recv_bytes: float, p: int) -> float:
        """One all-to-all: every peer sends at once; the busiest receiver bounds the time."""
        if p <= 1:
            return 0.0
        return self.lat + recv_bytes / self.bw

    def ring(self, bytes_per_step: float, steps: int) -> float:
        return steps * (self.lat + bytes_per_step / self.bw)

    def p2p(self, bytes_: float) -> float:
        return self.lat + bytes_ / self.bw


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost on one GPU of its stage. Integers are what plans are judged by; ``terms``
    (seconds) explain them."""

    weight_bytes: int
    kv_bytes: int
    prefill_ns: int
    prefill_typical_ns: int
    decode_ns: int
    prefill_terms: dict[str, float] = field(default_factory=dict)
    decode_terms: dict[str, float] = field(default_factory=dict)

    @property
    def mem_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes


@dataclass(frozen=True)
class StageExtras:
    """Costs that belong to a stage rather than a layer."""

    first_weight_bytes: int  # embedding
    last_weight_bytes: int  # LM head (+ final norm)
    every_bytes: int  # activation workspace + comm buffers + runtime reserve
    last_bytes: int  # logits
    first_prefill_ns: int
    last_prefill_ns: int
    first_prefill_typical_ns: int
    last_prefill_typical_ns: int
    first_decode_ns: int
    last_decode_ns: int
    hop_prefill_ns: int
    hop_prefill_typical_ns: int
    hop_decode_ns: int
    memory_terms: dict[str, int] = field(default_factory=dict)


def _ceil_ns(seconds: float) -> int:
    return math.ceil(seconds * NS_PER_S - 1e-6)  # tolerate float noise on exact integers


class CostModel:
    """The cost model bound to one model, GPU type and workload. Cheap to build; per-layer costs
    are cached by everything they depend on."""

    def __init__(self, model: ModelSpec, hw: HardwareSpec, workload: Workload):
        self.model = model
        self.hw = hw
        self.workload = workload
        self.w_bytes = BYTES_PER_ELEMENT[model.weight_precision]
        self.e_bytes = BYTES_PER_ELEMENT[model.expert_weight_precision]
        self.a_bytes = BYTES_PER_ELEMENT[model.activation_precision]
        self.kv_elem_bytes = BYTES_PER_ELEMENT[model.kv_precision]
        self.roof = Roofline(
            weight_flops=effective_tflops(hw, model.weight_precision) * 1e12,
            expert_flops=effective_tflops(hw, model.expert_weight_precision) * 1e12,
            attn_flops=effective_tflops(hw, model.activation_precision) * 1e12,
            hbm_bytes_s=hw.hbm_tb_s * 1e12 * hw.hbm_efficiency,
        )
        self.intra = Links(hw.intra_node_gb_s * 1e9 * hw.comm_efficiency,
                           hw.intra_node_latency_us * 1e-6)
        self.inter = Links(hw.inter_node_gb_s * 1e9 * hw.comm_efficiency,
                           hw.inter_node_latency_us * 1e-6)
        self.layers: list[LayerParams] = [layer_params(model, i) for i in range(model.num_layers)]
        self.moe = [lp.num_experts > 0 for lp in self.layers]
        sliding = set(model.attention.sliding_layers)
        self.window = [model.attention.sliding_window if i in sliding else None
                       for i in range(model.num_layers)]
        self.kv_token = [kv_bytes_per_token_per_layer(model, i) for i in range(model.num_layers)]
        # Layers with equal parameters, window and KV size cost the same: one "kind" each.
        kinds: dict[tuple, int] = {}
        self.kind = [kinds.setdefault((self.moe[i], self.window[i], self.layers[i],
                                       self.kv_token[i]), len(kinds))
                     for i in range(model.num_layers)]
        self.has_dense_ffn = any(lp.dense_ffn for lp in self.layers)
        self._layer_cache: dict[tuple, LayerCost] = {}
        self._static_cache: dict[tuple, tuple] = {}
        self._decode_cache: dict[tuple, dict[str, float]] = {}

    # -- layout -------------------------------------------------------------------------------

    def link(self, group_span: int) -> Links:
        """Link of a group whose ranks are ``group_span`` consecutive GPUs: intra-node when the
        span tiles nodes exactly (every group then sits inside one node)."""
        gpn = self.hw.gpus_per_node
        return self.intra if group_span <= gpn and gpn % group_span == 0 else self.inter

    # -- attention geometry -------------------------------------------------------------------

    @cached_property
    def _kv_proj_params(self) -> int:
        a, h = self.model.attention, self.model.hidden_size
        if a.kind != "gqa":
            return 0
        n = 2 * h * a.num_kv_heads * a.head_dim
        return n + (2 * a.num_kv_heads * a.head_dim if a.bias else 0)

    def kv_shard(self, tp: int) -> int:
        """GPUs a layer's KV cache is split over inside a TP group: GQA shards KV heads over
        ``min(tp, kv_heads)`` (heads are replicated beyond), MLA's latent is replicated."""
        a = self.model.attention
        return min(tp, a.num_kv_heads) if a.kind == "gqa" else 1

    def attn_weight_params_per_gpu(self, lp: LayerParams, tp: int) -> float:
        kv = self._kv_proj_params
        return (lp.attn_sharded - kv) / tp + kv / self.kv_shard(tp) + lp.attn_replicated

    def _attn_core_flops_per_pair(self, tp: int) -> float:
        """FLOPs of one (query, key) pair across this GPU's heads: QK^T and PV, 2 FLOPs/MAC."""
        a = self.model.attention
        heads = a.num_heads / tp
        if a.kind == "mla":
            return 2 * heads * (a.qk_head_dim + a.v_head_dim)
        return 2 * heads * (2 * a.head_dim)

    def _attn_decode_flops_per_key(self, tp: int) -> float:
        a = self.model.attention
        heads = a.num_heads / tp
        if a.kind == "mla":  # weight-absorbed MLA attends in the latent space
            return 2 * heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
        return 2 * heads * (2 * a.head_dim)

    def _params_per_gpu(self, lp: LayerParams, tp: int) -> tuple[float, float]:
        """Attention params, and dense FFN + shared experts + router params, on one GPU."""
        return (self.attn_weight_params_per_gpu(lp, tp),
                lp.dense_ffn / tp + lp.shared / tp + lp.router)

    def _weight_gemms(self, tokens: float, attn_params: float, dense_params: float
                      ) -> dict[str, float]:
        """The attention projections and the dense FFN/shared experts over ``tokens`` tokens:
        each reads its weights once and streams the activations."""
        act = tokens * self.model.hidden_size * self.a_bytes
        return {
            "attn_proj": self.roof.op(2 * tokens * attn_params,
                                      attn_params * self.w_bytes + 4 * act,
                                      self.roof.weight_flops),
            "ffn_dense": self.roof.op(2 * tokens * dense_params,
                                      dense_params * self.w_bytes + 2 * act,
                                      self.roof.weight_flops),
        }

    def _moe_terms(self, lp: LayerParams, routed: float, hot_slots: int, etp: int, ep: int
                   ) -> dict[str, float]:
        """The busiest GPU's expert GEMMs over ``routed`` token assignments (reading only the
        experts they touch) and the dispatch/combine that brings the tokens."""
        touched = expected_touched(hot_slots, routed)
        act_bytes = 2 * routed * self.model.hidden_size * self.a_bytes
        return {
            "moe_experts": self.roof.op(2 * routed * lp.expert / etp,
                                        touched * lp.expert / etp * self.e_bytes + act_bytes,
                                        self.roof.expert_flops),
            "ep_comm": self.moe_dispatch_combine(routed, etp, ep),
        }

    def moe_dispatch_combine(self, routed: float, etp: int, ep: int) -> float:
        """Dispatch tokens to, and combine outputs from, the ``etp·ep`` GPUs that hold a slice of
        the experts: every GPU receives each token assignment of its EP rank (each ``etp`` slice
        must see every token), all but the ``1/(etp·ep)`` that start on it; the combine moves
        the same volume back (reduce-scatter of the slices' partial sums)."""
        group = etp * ep
        if group <= 1:
            return 0.0
        recv = routed * self.model.hidden_size * self.a_bytes * (group - 1) / group
        return 2 * self.link(group).all_to_all(recv, group)

    @staticmethod
    def causal_pairs(seq: int, window: int | None) -> float:
        """(query, key) pairs of causal attention over ``seq`` tokens, optionally windowed."""
        if window is None or window >= seq:
            return seq * (seq + 1) / 2
        return window * (window + 1) / 2 + (seq - window) * window

    # -- one layer ----------------------------------------------------------------------------

    def layer_cost(
        self,
        layer: int,
        d: Degrees,
        batch: int,
        hottest_units: int = 0,
        load_resolution: int = 1,
        hot_slots: int = 0,
    ) -> LayerCost:
        """Cost of ``layer`` on one GPU. For MoE layers, ``hottest_units / load_resolution`` is the
        fraction of the layer's routed tokens that its busiest EP rank receives and
        ``hot_slots`` the expert slots that rank holds.

        Memory and prefill do not depend on ``pp``; decode depends on it only through the
        microbatch size. Both halves are cached by what they depend on."""
        kind = self.kind[layer]
        if not self.moe[layer]:
            hottest_units, load_resolution, hot_slots = 0, 1, 0
        grid = (d.tp, d.cp, d.dp, d.ep, d.etp, d.edp)
        micro = ceil_div(batch, d.pp)
        key = (kind, grid, batch, micro, hottest_units, load_resolution, hot_slots)
        hit = self._layer_cache.get(key)
        if hit is not None:
            return hit
        hot = hottest_units / load_resolution
        skey = (kind, grid, batch, hottest_units, load_resolution, hot_slots)
        static = self._static_cache.get(skey)
        if static is None:
            static = self._static_cost(layer, d, batch, hot, hot_slots)
            self._static_cache[skey] = static
        dkey = (kind, grid, micro, hottest_units, load_resolution, hot_slots)
        decode = self._decode_cache.get(dkey)
        if decode is None:
            decode = self._decode_cost(layer, d, micro, hot, hot_slots)
            self._decode_cache[dkey] = decode
        weight_bytes, kv_bytes, pf, pf_typ = static
        cost = LayerCost(
            weight_bytes=weight_bytes,
            kv_bytes=kv_bytes,
            prefill_ns=_ceil_ns(sum(pf.values())),
            prefill_typical_ns=_ceil_ns(sum(pf_typ.values())),
            decode_ns=_ceil_ns(sum(decode.values())),
            prefill_terms=pf,
            decode_terms=decode,
        )
        self._layer_cache[key] = cost
        return cost

    def _static_cost(
        self, layer: int, d: Degrees, batch: int, hot_frac: float, hot_slots: int
    ) -> tuple[int, int, dict[str, float], dict[str, float]]:
        """Weights and KV cache per GPU, and the prefill terms at maximum and typical input."""
        m, wl = self.model, self.workload
        lp = self.layers[layer]
        tp, cp, dp, ep, etp, edp = d.tp, d.cp, d.dp, d.ep, d.etp, d.edp
        is_moe = lp.num_experts > 0
        window = self.window[layer]
        hidden = m.hidden_size

        # ---- memory: weights and KV cache ----
        attn_params, dense_params = self._params_per_gpu(lp, tp)
        expert_params = hot_slots * lp.expert / etp if is_moe else 0.0
        weight_bytes = math.ceil((attn_params + dense_params) * self.w_bytes
                                 + expert_params * self.e_bytes)
        ctx_max = wl.max_context if window is None else min(wl.max_context, window)
        seqs_per_rank = ceil_div(batch, dp)
        kv_bytes = math.ceil(seqs_per_rank * ceil_div(ctx_max, cp) * self.kv_token[layer]
                             / self.kv_shard(tp))

        # ---- prefill: a wave of `requests` prompts per attention-DP rank, split over cp ----
        def prefill(seq: int, requests: int) -> dict[str, float]:
            t: dict[str, float] = {}
            tokens = requests * ceil_div(seq, cp)  # tokens this GPU's attention rank holds
            act = tokens * hidden * self.a_bytes
            t.update(self._weight_gemms(tokens, attn_params, dense_params))
            pairs = requests * self.causal_pairs(seq, window) / cp
            kv_read = tokens * self.kv_token[layer] / self.kv_shard(tp)
            t["attn_core"] = self.roof.op(pairs * self._attn_core_flops_per_pair(tp),
                                          2 * act + kv_read, self.roof.attn_flops)
            if is_moe:
                # routed token assignments on the busiest GPU
                routed = dp * requests * seq * lp.top_k * hot_frac / edp
                t.update(self._moe_terms(lp, routed, hot_slots, etp, ep))
            t["tp_comm"] = 2 * self.link(tp).all_reduce(act, tp)
            if cp > 1:
                kv_block = tokens * self.kv_token[layer] / self.kv_shard(tp)
                t["cp_comm"] = self.link(tp * cp).ring(kv_block, cp - 1)
            return t

        # TTFT: one maximum-length prompt per rank. Throughput: the rank's whole share of the
        # batch prefilled together, so weights are read once per wave, not once per prompt.
        return (weight_bytes, kv_bytes, prefill(wl.max_input, 1),
                prefill(wl.input_len, seqs_per_rank))

    def _decode_cost(
        self, layer: int, d: Degrees, micro: int, hot_frac: float, hot_slots: int
    ) -> dict[str, float]:
        """Terms of one decode step of a microbatch of ``micro`` sequences."""
        m, wl = self.model, self.workload
        lp = self.layers[layer]
        tp, cp, dp, ep, etp, edp = d.tp, d.cp, d.dp, d.ep, d.etp, d.edp
        is_moe = lp.num_experts > 0
        window = self.window[layer]
        hidden = m.hidden_size
        attn_params, dense_params = self._params_per_gpu(lp, tp)
        dt: dict[str, float] = {}
        seqs = ceil_div(micro, dp)  # sequences (= tokens) per attention rank this step
        act = seqs * hidden * self.a_bytes
        dt.update(self._weight_gemms(seqs, attn_params, dense_params))
        ctx = wl.input_len + ceil_div(wl.output_len, 2)
        if window is not None:
            ctx = min(ctx, window)
        keys = ceil_div(ctx, cp)
        dt["attn_core"] = self.roof.op(
            seqs * keys * self._attn_decode_flops_per_key(tp),
            seqs * keys * self.kv_token[layer] / self.kv_shard(tp), self.roof.attn_flops)
        if is_moe:
            routed = micro * lp.top_k * hot_frac / edp
            dt.update(self._moe_terms(lp, routed, hot_slots, etp, ep))
        dt["tp_comm"] = 2 * self.link(tp).all_reduce(act, tp)
        if cp > 1:  # combine partial attention outputs (flash-decoding style)
            dt["cp_comm"] = self.link(tp * cp).ring(act, cp - 1)
        return dt

    # -- stage extras ---------------------------------------------------------------------------

    def stage_extras(self, d: Degrees, batch: int, max_hot_frac: float) -> StageExtras:
        m, wl, hw = self.model, self.workload, self.hw
        tp, cp, dp, pp = d.tp, d.cp, d.dp, d.pp
        hidden = m.hidden_size
        emb_bytes = math.ceil(embedding_params(m) / tp * self.w_bytes)
        head_params = lm_head_params(m)
        if m.tie_embeddings and pp > 1:  # the last stage needs its own copy of the tied matrix
            head_params += embedding_params(m)
        head_bytes = math.ceil(head_params / tp * self.w_bytes)
        head_flop_params = embedding_params(m) if m.tie_embeddings else head_params

        # Activation workspace of one prefill wave, reused layer after layer.
        tokens = ceil_div(wl.max_input, cp)
        ffn_local = max(
            [m.dense_ffn_width // tp if self.has_dense_ffn else 0]
            + [(m.shared_width * m.num_shared_experts) // tp if m.num_shared_experts else 0]
        )
        workspace = tokens * self.a_bytes * (WORKSPACE_HIDDEN_TENSORS * hidden + 2 * ffn_local)
        moe_buffers = 0
        if any(self.moe):
            routed = dp * wl.max_input * m.top_k * max_hot_frac / d.edp
            moe_buffers = math.ceil(routed * self.a_bytes
                                    * (2 * hidden + 2 * m.expert_ffn_width / d.etp))
        micro = ceil_div(batch, pp)
        seqs = ceil_div(micro, dp)
        per_rank = ceil_div(batch, dp)  # prompts per attention-DP rank in a throughput wave
        comm_buffers = 0
        if tp > 1 or pp > 1 or d.ep > 1 or cp > 1:
            comm_buffers = 2 * max(tokens, seqs) * hidden * math.ceil(self.a_bytes)
        reserve = math.ceil(hw.reserved_gb * BYTES_PER_GB)
        every = math.ceil(workspace) + moe_buffers + comm_buffers + reserve
        logits = seqs * math.ceil(m.vocab_size / tp) * LOGIT_BYTES

        def head_time(rows: int) -> float:
            p = head_flop_params / tp
            return self.roof.op(2 * rows * p, p * self.w_bytes, self.roof.weight_flops)

        def emb_time(rows: int) -> float:
            return rows * hidden * self.w_bytes / self.roof.hbm_bytes_s

        # Only the last position of each prompt needs logits during prefill.
        hop_link = self.link(d.gpus_per_instance)

        def hop(rows: int) -> int:
            return _ceil_ns(hop_link.p2p(rows * hidden * self.a_bytes)) if pp > 1 else 0

        return StageExtras(
            first_weight_bytes=emb_bytes,
            last_weight_bytes=head_bytes,
            every_bytes=every,
            last_bytes=logits,
            first_prefill_ns=_ceil_ns(emb_time(tokens)),
            last_prefill_ns=_ceil_ns(head_time(1)),
            first_prefill_typical_ns=_ceil_ns(emb_time(per_rank * ceil_div(wl.input_len, cp))),
            last_prefill_typical_ns=_ceil_ns(head_time(per_rank)),
            first_decode_ns=_ceil_ns(emb_time(seqs)),
            last_decode_ns=_ceil_ns(head_time(seqs)),
            hop_prefill_ns=hop(tokens),
            hop_prefill_typical_ns=hop(per_rank * ceil_div(wl.input_len, cp)),
            hop_decode_ns=hop(seqs),
            memory_terms={
                "activation_workspace": math.ceil(workspace) + moe_buffers,
                "comm_buffers": comm_buffers,
                "runtime_reserve": reserve,
                "logits": logits,
                "embedding": emb_bytes,
                "lm_head": head_bytes,
            },
        )


def expected_touched(slots: int, assignments: float) -> float:
    """Expected distinct experts among ``slots`` that ``assignments`` routed tokens touch, each
    token picking a slot uniformly: ``slots · (1 - (1 - 1/slots)^assignments)``. Monotone in
    both arguments; never above ``slots`` nor above ``assignments``."""
    if slots <= 0 or assignments <= 0:
        return 0.0
    if slots == 1:
        return min(1.0, assignments)
    touched = slots * (1.0 - (1.0 - 1.0 / slots) ** assignments)
    return min(float(slots), touched, assignments)
