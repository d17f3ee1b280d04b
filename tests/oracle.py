"""An independent evaluator of one plan in roofline mode, written from docs/cost-model.md.

It re-derives every number the estimator reports (stage memory, TPOT, TTFT at load and idle, the
metrics) from the page's formulas ("Serving semantics", "Memory per GPU" and the "Appendix: exact
formulas (roofline mode)"), with plain loops over layers, steps and ``s``. It imports only the
schema, the parameter counts (tested against published counts in test_params.py), the expert
loads and DeepSeek's EPLB greedy placement — never the cost model, the kernels, the timing module,
the rules or the estimator it checks. Where the page leaves a choice open, the reading taken is
noted next to the code ("Reading:").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from solver import params
from solver.baselines import greedy_placement
from solver.loads import LOAD_RESOLUTION, layer_loads
from solver.params import layer_params
from solver.schema import BYTES_PER_ELEMENT, Instance, Plan, ceil_div

FP8_DISPATCH_BYTES = 1 + 4 / 128  # one byte per element plus an FP32 scale per 128 elements
LOGIT_BYTES = 4  # FP32 logits


def to_ns(seconds: float) -> int:
    """Seconds to integer ns, rounded up: ``⌈x·1e9 − 1e-6⌉`` (the appendix)."""
    return math.ceil(seconds * 1e9 - 1e-6)


@dataclass
class OracleResult:
    stage_mem_bytes: list[int]
    stage_avg_ns: list[int]
    stage_full_ns: list[int]
    hop_ns: int
    hop_full_ns: int
    overhead_ns: int
    s: int
    tpot_ns: int
    round_ns: int
    ttft_ns: int | None  # None when the prefill queue saturates (ρ ≥ 1)
    ttft_idle_ns: int
    rho: Fraction
    metrics: dict[str, float]


class Oracle:
    """The cost model of one instance, re-derived from the documentation."""

    def __init__(self, inst: Instance):
        self.inst = inst
        m, hw, wl, eng = inst.model, inst.hardware, inst.workload, inst.engine
        self.m, self.hw, self.wl, self.h = m, hw, wl, m.hidden_size
        self.a = BYTES_PER_ELEMENT[m.activation_precision]
        self.w = BYTES_PER_ELEMENT[m.weight_precision]
        self.e = BYTES_PER_ELEMENT[m.expert_precision or m.weight_precision]
        self.w_math = self.math(m.weight_precision)
        self.e_math = self.math(m.expert_precision or m.weight_precision)
        self.act_math = self.math(m.activation_precision)
        self.hbm = hw.hbm_tb_s * 1e12 * hw.hbm_efficiency  # achieved bytes/s
        self.N = eng.token_budget
        self.overhead_ns = math.ceil(eng.overhead_us * 1000)
        self.two_batch = eng.overlap == "two_batch"
        self.dispatch_x = FP8_DISPATCH_BYTES if eng.dispatch_precision == "fp8" else self.a
        self.loads = layer_loads(m, inst.expert_load)

    # -- primitives ----------------------------------------------------------------------------

    def math(self, weight: str) -> str:
        """A GEMM computes in its weight precision where the GPU lists tensor cores for it, else
        in the activation precision (weights dequantised on the fly)."""
        return weight if weight in self.hw.peak_tflops else self.m.activation_precision

    def op(self, flops: float, nbytes: float, precision: str) -> float:
        peak = self.hw.peak_tflops[precision] * 1e12 * self.hw.mfu
        return max(flops / peak, nbytes / self.hbm)

    def intra(self) -> tuple[float, float]:
        """(achieved bytes/s, latency in s) of the intra-node link."""
        hw = self.hw
        return hw.intra_node_gb_s * 1e9 * hw.comm_efficiency, hw.intra_node_latency_us * 1e-6

    def inter(self) -> tuple[float, float]:
        hw = self.hw
        return hw.inter_node_gb_s * 1e9 * hw.comm_efficiency, hw.inter_node_latency_us * 1e-6

    def link(self, span: int) -> tuple[float, float]:
        """The link of a group of ``span`` consecutive GPUs: intra-node iff it tiles nodes."""
        gpn = self.hw.gpus_per_node
        return self.intra() if span <= gpn and gpn % span == 0 else self.inter()

    def kv_tok(self, layer: int, tp: int) -> float:
        """KV bytes per token on one GPU: GQA shards KV heads over min(tp, K), MLA replicates."""
        att = self.m.attention
        shard = min(tp, att.num_kv_heads) if att.kind == "gqa" else 1
        return params.kv_bytes_per_token_per_layer(self.m, layer) / shard

    def window(self, layer: int, ctx: int) -> int:
        att = self.m.attention
        return min(ctx, att.sliding_window) if layer in att.sliding_layers else ctx

    def attn_params(self, layer: int, tp: int) -> float:
        att, lp = self.m.attention, layer_params(self.m, layer)
        kv = 0
        if att.kind == "gqa":
            kv = 2 * self.h * att.num_kv_heads * att.head_dim
            if att.bias:
                kv += 2 * att.num_kv_heads * att.head_dim
        return (lp.attn_sharded - kv) / tp + kv / min(tp, att.num_kv_heads) + lp.attn_replicated

    def ffn_params(self, layer: int, tp: int) -> float:
        lp = layer_params(self.m, layer)
        return lp.dense_ffn / tp + lp.shared / tp + lp.router

    def sets(self, g: dict) -> int:
        span = g["etp"] * g["ep"]
        return span // g["tp"] if span % g["tp"] == 0 else 1

    # -- one layer, one step (seconds per term) -------------------------------------------------

    def layer_terms(self, layer: int, g: dict, hot: tuple[float, int] | None, n_d: float,
                    n_p: float, u: float) -> dict[str, float]:
        m, h, a, att = self.m, self.h, self.a, self.m.attention
        tp, cp, ep, etp = g["tp"], g["cp"], g["ep"], g["etp"]
        lp = layer_params(m, layer)
        moe = lp.num_experts > 0
        splits = 2 if self.two_batch and moe and ep * etp > 1 else 1
        d, p = n_d / splits, n_p / splits
        T = d + p / cp
        t: dict[str, float] = {}
        pa = self.attn_params(layer, tp)
        t["attn_proj"] = splits * self.op(2 * T * pa, pa * self.w + T * 2 * h * a, self.w_math)
        keys = ceil_div(self.window(layer, self.wl.mean_context), cp)
        kv_tok = self.kv_tok(layer, tp)
        heads = att.num_heads / tp
        if att.kind == "mla":
            f_key = 2 * heads * (2 * att.kv_lora_rank + att.qk_rope_head_dim)
            f_pair = 2 * heads * (att.qk_nope_head_dim + att.qk_rope_head_dim + att.v_head_dim)
        else:
            f_key = f_pair = 2 * heads * 2 * att.head_dim
        decode = self.op(d * keys * f_key, d * keys * kv_tok + 2 * d * h * a, self.act_math)
        prefix = (u / cp) * kv_tok if p > 0 else 0.0
        prefill = self.op((p * u / cp) * f_pair, (p / cp) * (kv_tok + 2 * h * a) + prefix,
                          self.act_math)
        t["attn_core"] = splits * (decode + prefill)
        pf = self.ffn_params(layer, tp)
        t["ffn_dense"] = splits * self.op(2 * T * pf, pf * self.w + T * 2 * h * a,
                                          self.w_math) if pf else 0.0
        if moe:
            share, slots = hot
            sets = self.sets(g)
            routed = sets * ((d + p) / cp) * lp.top_k * share
            touched = min(slots, slots * (1 - (1 - 1 / slots) ** routed), routed)
            pe = lp.expert / etp
            t["moe_experts"] = splits * self.op(
                2 * routed * pe, touched * pe * self.e + routed * (2 * h + m.expert_ffn_width
                                                                     / etp) * a, self.e_math)
            t["ep_comm"] = splits * self.ep_comm(g, routed, lp.top_k, sets)
        c = 2 + (2 if att.qk_norm else 0)
        t["norms"] = splits * 3 * T * h * a * c / self.hbm
        bw, lat = self.link(tp)  # two ring all-reduces (nothing to reduce when tp = 1)
        t["tp_comm"] = splits * 2 * (2 * (tp - 1) * lat + 2 * (tp - 1) / tp * T * h * a / bw)
        if cp > 1:
            bw, lat = self.link(tp * cp)
            t["cp_comm"] = splits * (cp - 1) * (lat + ((p / cp) * kv_tok + d * h * a) / bw)
        if splits == 2:
            compute = t["attn_proj"] + t["attn_core"] + t["ffn_dense"] + t["moe_experts"]
            t["overlap"] = -min(t["ep_comm"], compute) / 2  # a two-job flow shop hides half
        return t

    def ep_comm(self, g: dict, routed: float, top_k: int, sets: int) -> float:
        if sets <= 1:  # a TP-MoE group: every token is already on every GPU
            return 0.0
        ep, tp, gpn, h = g["ep"], g["tp"], self.hw.gpus_per_node, self.h
        span = g["etp"] * ep
        R = ep * (1 - (1 - 1 / ep) ** top_k)
        arriving = routed * (R / top_k) * (sets - 1) / sets
        total = 0.0
        for x in (self.dispatch_x, self.a):  # dispatch, then combine
            b = arriving * h * x
            if span <= gpn:
                bw, lat = self.link(span)
                total += lat + b / bw
                continue
            n = ceil_div(span, gpn)
            sets_node = max(1, gpn // tp)
            rdma = b * (sets - sets_node) / (sets - 1) * n * (1 - (1 - 1 / n) ** top_k) / R
            inter, intra = self.inter(), self.intra()
            total += max(inter[1] + rdma / inter[0], intra[1] + b / intra[0])
        return total

    # -- stage extras, one step (seconds) ----------------------------------------------------------

    def extras(self, g: dict, rows: float, tokens: float) -> dict[str, float]:
        h, a = self.h, self.a
        ph = self.m.vocab_size * h / g["tp"]
        out = {"embedding": tokens * h * self.w / self.hbm,
               "lm_head": self.op(2 * rows * ph, ph * self.w + rows * h * a, self.w_math),
               "hop": 0.0}
        if g["pp"] > 1:
            bw, lat = self.link(g["pp"] * g["tp"] * g["cp"] * g["dp"])
            out["hop"] = lat + tokens * h * a / bw
        return out

    # -- placement -------------------------------------------------------------------------------

    def hot_ranks(self, plan: Plan, redundant: int) -> dict[int, tuple[float, int]]:
        """Per MoE layer: (busiest rank's share of routed copies, its slot count). A replica of
        an expert with load l and n replicas carries ⌈l/n⌉ units (docs/placement.md)."""
        ep = plan.degrees.ep
        given = {p.layer: p.ranks for p in plan.placement or ()}
        out = {}
        for i, layer in enumerate(self.m.moe_layers):
            loads = [int(x) for x in self.loads[i]]
            ranks = given.get(layer) or greedy_placement(self.loads[i], ep, redundant).ranks
            copies = [0] * len(loads)
            for r in ranks:
                for e in r:
                    copies[e] += 1
            per_rank = [sum(ceil_div(loads[e], copies[e]) for e in r) for r in ranks]
            busiest = max(range(len(ranks)), key=lambda r: per_rank[r])
            out[layer] = (per_rank[busiest] / LOAD_RESOLUTION, len(ranks[busiest]))
        return out

    # -- a plan ------------------------------------------------------------------------------------

    def rho(self, s: int) -> float:
        wl = self.wl
        return s * wl.input_len / (wl.output_len * (self.N - s))

    def evaluate(self, plan: Plan) -> OracleResult:
        m, wl, N = self.m, self.wl, self.N
        d = plan.degrees
        g = dict(tp=d.tp, cp=d.cp, dp=d.dp, ep=d.ep, etp=d.etp, edp=d.edp, pp=d.pp)
        pp = d.pp
        redundant = plan.redundant_experts
        if redundant is None:
            redundant = self.inst.search.redundant_experts if d.ep > 1 else 0
        hot = self.hot_ranks(plan, redundant)
        q = ceil_div(plan.batch, d.dp)
        s = ceil_div(q, pp)
        if plan.stages:
            bounds = [(st.first_layer, st.last_layer) for st in plan.stages]
        else:  # Reading: "balanced" = the first L mod pp stages one layer longer.
            sizes = [m.num_layers // pp + (1 if k < m.num_layers % pp else 0) for k in range(pp)]
            starts = [sum(sizes[:k]) for k in range(pp)]
            bounds = [(a, a + n - 1) for a, n in zip(starts, sizes, strict=True)]
        u_typ, u_max = (wl.input_len + 1) / 2, (wl.max_input + 1) / 2

        # Per layer and s' = 1..s: average and full-max steps; the running max over s'; to ns.
        avg_ns, full_ns = [], []
        for layer in range(m.num_layers):
            hr = hot.get(layer)
            best_avg = best_full = -math.inf
            for s1 in range(1, s + 1):
                rho = self.rho(s1)
                dec = sum(self.layer_terms(layer, g, hr, s1, 0, 0).values())
                full = sum(self.layer_terms(layer, g, hr, s1, N - s1, u_typ).values())
                fmax = sum(self.layer_terms(layer, g, hr, s1, N - s1, u_max).values())
                best_avg = max(best_avg, rho * full + (1 - rho) * dec)
                best_full = max(best_full, fmax)
            avg_ns.append(to_ns(best_avg))
            full_ns.append(to_ns(best_full))

        # Stage extras, each mixed with ρ, made non-decreasing and rounded on its own.
        # Reading: the embedding, LM head and hop are three separately rounded integers.
        ex_avg = dict.fromkeys(("embedding", "lm_head", "hop"), -math.inf)
        ex_full = dict(ex_avg)
        for s1 in range(1, s + 1):
            rho = self.rho(s1)
            dec = self.extras(g, s1, s1)
            full = self.extras(g, s1 + 1, s1 + (N - s1) / d.cp)
            for k in ex_avg:
                ex_avg[k] = max(ex_avg[k], rho * full[k] + (1 - rho) * dec[k])
                ex_full[k] = max(ex_full[k], full[k])
        ex_avg_ns = {k: to_ns(v) for k, v in ex_avg.items()}
        ex_full_ns = {k: to_ns(v) for k, v in ex_full.items()}

        # Memory of one GPU of each stage.
        mem_every = self.fixed_memory(g, hot)
        mems, stage_avg, stage_full = [], [], []
        for k, (first, last) in enumerate(bounds):
            layers = range(first, last + 1)
            weights = sum(self.weight_bytes(layer, g, hot.get(layer)) for layer in layers)
            # docs: KV per sequence at the mean context, or at input + output where the engine
            # reserves the whole sequence at admission (TensorRT-LLM)
            held = (wl.input_len + wl.output_len if self.inst.engine.name == "trtllm"
                    else wl.mean_context)
            kv_seq = sum(self.kv_bytes(layer, g, held) for layer in layers)
            kv_max = sum(self.kv_bytes(layer, g, wl.max_context) for layer in layers)
            mem = weights + max(q * kv_seq, kv_max) + mem_every
            t_avg = sum(avg_ns[layer] for layer in layers)
            t_full = sum(full_ns[layer] for layer in layers)
            if k == 0:
                mem += math.ceil(m.vocab_size * self.h / d.tp * self.w)
                t_avg += ex_avg_ns["embedding"]
                t_full += ex_full_ns["embedding"]
            if k == pp - 1:
                tied_copy = params.embedding_params(m) if m.tie_embeddings and pp > 1 else 0
                head = params.lm_head_params(m) + tied_copy  # LM head + final norm (+ copy)
                mem += math.ceil(head / d.tp * self.w) + s * ceil_div(m.vocab_size, d.tp) \
                    * LOGIT_BYTES
                t_avg += ex_avg_ns["lm_head"]
                t_full += ex_full_ns["lm_head"]
            mems.append(mem)
            stage_avg.append(t_avg)
            stage_full.append(t_full)

        # Serving figures.
        o = self.overhead_ns
        hop, hop_full = (ex_avg_ns["hop"], ex_full_ns["hop"]) if pp > 1 else (0, 0)
        M, M_full = max(stage_avg), max(stage_full)
        tpot = pp * (M + hop + o)
        round_ = (M_full + hop_full + o) + (pp - 1) * (M + hop + o)
        free = N - s
        rho = Fraction(s * wl.input_len, wl.output_len * free) if free > 0 else Fraction(1)
        ttft = None
        if rho < 1:
            service = Fraction(wl.input_len, free)
            rounds = rho * service / (2 * (1 - rho)) + math.ceil(Fraction(wl.max_input, free))
            ttft = math.ceil(rounds * round_)
        idle = self.ttft_idle_ns(g, hot)
        gpus_instance = pp * d.tp * d.cp * d.dp
        rate = plan.batch / (tpot / 1e9)
        metrics = {
            "ttft_s": ttft / 1e9 if ttft is not None else math.inf,
            "ttft_idle_s": idle / 1e9,
            "tpot_s": tpot / 1e9,
            "output_tokens_per_s": rate * d.replicas,
            "output_tokens_per_s_per_gpu": rate / gpus_instance,
            "tokens_per_s_per_user": 1 / (tpot / 1e9),
            "requests_per_s": rate * d.replicas / wl.output_len,
            "prefill_utilization": float(rho),
            "peak_memory_gb": max(mems) / 1e9,
        }
        return OracleResult(mems, stage_avg, stage_full, hop, hop_full, o, s, tpot, round_, ttft,
                            idle, rho, metrics)

    def ttft_idle_ns(self, g: dict, hot: dict) -> int:
        """One maximum-length prompt on an idle instance, in chunks of N: every layer, every
        stage, one step overhead per chunk. Reading: each chunk's tokens attend on average to the
        prompt before the chunk plus half the chunk (causal); embedding and hop carry the
        chunk's tokens over cp like a full step; the LM head runs once for the one sampled row;
        all seconds are summed and rounded up once."""
        N, cp, pp = self.N, g["cp"], g["pp"]
        full, rest = divmod(self.wl.max_input, N)
        chunks = [N] * full + ([rest] if rest else [])
        total, start = 0.0, 0
        for c in chunks:
            u = start + (c + 1) / 2
            for layer in range(self.m.num_layers):
                total += sum(self.layer_terms(layer, g, hot.get(layer), 0, c, u).values())
            ex = self.extras(g, 1, c / cp)
            total += ex["embedding"] + (pp - 1) * ex["hop"]
            start += c
        total += self.extras(g, 1, 0)["lm_head"]
        return to_ns(total + len(chunks) * self.overhead_ns / 1e9)

    # -- memory ------------------------------------------------------------------------------------

    def weight_bytes(self, layer: int, g: dict, hot: tuple[float, int] | None) -> int:
        lp = layer_params(self.m, layer)
        dense = (self.attn_params(layer, g["tp"]) + self.ffn_params(layer, g["tp"])) * self.w
        experts = hot[1] * lp.expert / g["etp"] * self.e if lp.num_experts else 0.0
        return math.ceil(dense + experts)

    def kv_bytes(self, layer: int, g: dict, ctx: int) -> int:
        return math.ceil(ceil_div(self.window(layer, ctx), g["cp"]) * self.kv_tok(layer, g["tp"]))

    def fixed_memory(self, g: dict, hot: dict) -> int:
        """Workspace + MoE buffers + comm buffers + runtime reserve, on every stage."""
        m, N, h, a, tp = self.m, self.N, self.h, self.a, g["tp"]
        # Reading: the dense width counts only when the model has dense layers (a config may
        # carry a dense width it never uses).
        dense_local = m.dense_ffn_width // tp if m.dense_layers else 0
        shared_local = m.shared_width * m.num_shared_experts // tp if m.num_shared_experts else 0
        mem = math.ceil(N * a * (4 * h + 2 * max(dense_local, shared_local)))
        if m.moe_layers:
            hot_max = max(share for share, _ in hot.values())
            mem += math.ceil(self.sets(g) * (N / g["cp"]) * m.top_k * hot_max * a
                             * (2 * h + 2 * m.expert_ffn_width / g["etp"]))
        if max(tp, g["pp"], g["ep"], g["cp"], g["etp"]) > 1:
            mem += math.ceil(2 * N * h * a)
        return mem + math.ceil(self.hw.reserved_gb * 1e9)


def evaluate(inst: Instance, plan: Plan) -> OracleResult:
    return Oracle(inst).evaluate(plan)
