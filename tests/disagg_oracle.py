"""An independent evaluator of a two-pool plan in roofline mode, written from docs/cost-model.md,
"Disaggregated serving".

It builds on :class:`tests.oracle.Oracle` (per-layer terms, stage extras, weights, KV per token,
placements; itself written from the page without importing the cost model) and re-derives the
pair's figures with plain loops: the decode pool's TPOT and memory, the prefill pool's step,
round, capacity and memory, the M/D/1 wait, the flow-shop KV transfer and TTFT. It imports no
module it checks (not solver.pools, solver.disagg or solver.timing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from solver import params
from solver.schema import DisaggPlan, Instance, Plan, ceil_div
from tests.oracle import LOGIT_BYTES, Oracle, to_ns


@dataclass
class PairResult:
    decode_mem: list[int]
    decode_steps: list[int]
    tpot_ns: int
    decode_capacity: Fraction
    prefill_mem: list[int]
    prefill_steps: list[int]
    prefill_full: list[int]
    step_ns: int
    round_full_ns: int
    prefill_capacity: Fraction
    rho: Fraction
    wait_ns: Fraction | None
    own_ns: int
    streams: int
    transfer_ns: int
    ttft_ns: int | None


def _bounds(num_layers: int, pp: int, stages) -> list[tuple[int, int]]:
    if stages:
        return [(st.first_layer, st.last_layer) for st in stages]
    sizes = [num_layers // pp + (1 if k < num_layers % pp else 0) for k in range(pp)]
    starts = [sum(sizes[:k]) for k in range(pp)]
    return [(a, a + n - 1) for a, n in zip(starts, sizes, strict=True)]


def _grid(d) -> dict:
    return dict(tp=d.tp, cp=d.cp, dp=d.dp, ep=d.ep, etp=d.etp, edp=d.edp, pp=d.pp)


def _fixed_memory(o: Oracle, g: dict, hot: dict, tokens: float) -> int:
    """The oracle's fixed memory with the step's tokens in place of the token budget N."""
    saved = o.N
    o.N = tokens
    try:
        return o.fixed_memory(g, hot)
    finally:
        o.N = saved


def _ends(o: Oracle, g: dict, k: int, pp: int) -> int:
    m = o.m
    mem = 0
    if k == 0:
        mem += math.ceil(m.vocab_size * o.h / g["tp"] * o.w)
    if k == pp - 1:
        tied = params.embedding_params(m) if m.tie_embeddings and pp > 1 else 0
        mem += math.ceil((params.lm_head_params(m) + tied) / g["tp"] * o.w)
    return mem


def _kv_holders(o: Oracle, g: dict) -> int:
    att = o.m.attention
    shard = min(g["tp"], att.num_kv_heads) if att.kind == "gqa" else 1
    return g["pp"] * shard * g["cp"]


def evaluate(inst: Instance, plan: DisaggPlan) -> PairResult:
    o = Oracle(inst)
    m, wl = o.m, o.wl
    lam = Fraction(wl.targets.min_output_tokens_per_s) / wl.output_len

    # -- decode pool --
    dp_plan = plan.decode
    d = dp_plan.degrees
    g = _grid(d)
    red = dp_plan.redundant_experts
    if red is None:
        red = inst.search.redundant_experts if d.ep > 1 else 0
    hot = o.hot_ranks(dp_plan, red)
    q = ceil_div(dp_plan.batch, d.dp)
    s = ceil_div(q, d.pp)
    layer_ns = []
    for layer in range(m.num_layers):
        best = max(sum(o.layer_terms(layer, g, hot.get(layer), s1, 0, 0).values())
                   for s1 in range(1, s + 1))
        layer_ns.append(to_ns(best))
    ex = {k: to_ns(max(o.extras(g, s1, s1)[k] for s1 in range(1, s + 1)))
          for k in ("embedding", "lm_head", "hop")}
    fixed = o.fixed_memory(g, hot)
    mems, steps = [], []
    bounds = _bounds(m.num_layers, d.pp, dp_plan.stages)
    for k, (a, b) in enumerate(bounds):
        layers = range(a, b + 1)
        weights = sum(o.weight_bytes(layer, g, hot.get(layer)) for layer in layers)
        held = wl.input_len + wl.output_len if inst.engine.name == "trtllm" else wl.mean_context
        kv = max(q * sum(o.kv_bytes(layer, g, held) for layer in layers),
                 sum(o.kv_bytes(layer, g, wl.max_context) for layer in layers))
        mem = weights + kv + fixed + _ends(o, g, k, d.pp)
        if k == d.pp - 1:
            mem += s * ceil_div(m.vocab_size, d.tp) * LOGIT_BYTES
        t = sum(layer_ns[layer] for layer in layers)
        t += ex["embedding"] if k == 0 else 0
        t += ex["lm_head"] if k == d.pp - 1 else 0
        mems.append(mem)
        steps.append(t)
    hop = ex["hop"] if d.pp > 1 else 0
    tpot = d.pp * (max(steps) + hop + o.overhead_ns)
    dec_cap = Fraction(d.replicas * dp_plan.batch * 10**9, tpot)

    # -- prefill pool --
    pf = plan.prefill
    p = pf.degrees
    gp = _grid(p)
    c = pf.tokens_per_step
    red_p = pf.redundant_experts
    if red_p is None:
        red_p = inst.search.redundant_experts if p.ep > 1 else 0
    hot_p = o.hot_ranks(Plan(degrees=p, batch=1, placement=pf.placement), red_p)
    u_typ, u_max = (wl.input_len + 1) / 2, (wl.max_input + 1) / 2
    step_l = [to_ns(sum(o.layer_terms(layer, gp, hot_p.get(layer), 0, c, u_typ).values()))
              for layer in range(m.num_layers)]
    full_l = [to_ns(sum(o.layer_terms(layer, gp, hot_p.get(layer), 0, c, u_max).values()))
              for layer in range(m.num_layers)]
    exp = {k: to_ns(v) for k, v in o.extras(gp, c / wl.input_len, c / p.cp).items()}
    fixed_p = _fixed_memory(o, gp, hot_p, c)
    resident = ceil_div(p.pp * (c + wl.max_input), p.cp)
    pmems, psteps, pfull = [], [], []
    pbounds = _bounds(m.num_layers, p.pp, pf.stages)
    for k, (a, b) in enumerate(pbounds):
        layers = range(a, b + 1)
        mem = sum(o.weight_bytes(layer, gp, hot_p.get(layer)) for layer in layers)
        mem += sum(math.ceil(resident * o.kv_tok(layer, p.tp) - 1e-6) for layer in layers)
        mem += fixed_p + _ends(o, gp, k, p.pp)
        if k == p.pp - 1:
            mem += ceil_div(c, wl.input_len) * ceil_div(m.vocab_size, p.tp) * LOGIT_BYTES
        t = sum(step_l[layer] for layer in layers)
        f = sum(full_l[layer] for layer in layers)
        if k == 0:
            t, f = t + exp["embedding"], f + exp["embedding"]
        if k == p.pp - 1:
            t, f = t + exp["lm_head"], f + exp["lm_head"]
        pmems.append(mem)
        psteps.append(t)
        pfull.append(f)
    phop = exp["hop"] if p.pp > 1 else 0
    M, Mf = max(psteps), max(pfull)
    step_ns = M + phop + o.overhead_ns
    round_full = (Mf + phop + o.overhead_ns) + (p.pp - 1) * (M + phop + o.overhead_ns)
    capacity = Fraction(p.replicas * p.dp * c * 10**9, step_ns)
    rho = lam * wl.input_len / capacity
    wait = None
    if rho < 1:
        wait = rho * Fraction(wl.input_len, c) * p.pp * step_ns / (2 * (1 - rho))
    own = math.ceil(Fraction(wl.max_input, c)) * round_full

    # -- the transfer: an event simulation of the two-machine flow shop --
    streams = min(_kv_holders(o, gp), _kv_holders(o, g))
    bw, lat = o.inter()
    x = [o.window(layer, wl.max_input) * params.kv_bytes_per_token_per_layer(m, layer)
         / (streams * bw) for layer in range(m.num_layers)]
    if inst.disaggregation.kv_transfer == "layerwise":
        compute_done, link_free = 0.0, 0.0
        for layer in range(m.num_layers):
            compute_done += full_l[layer] / 1e9
            link_free = max(link_free, compute_done) + x[layer]
        exposed = link_free - compute_done
    else:
        exposed = sum(x)
    transfer = math.ceil((lat + exposed) * 1e9 - 1e-6)
    ttft = None if wait is None else math.ceil(wait) + own + transfer
    return PairResult(mems, steps, tpot, dec_cap, pmems, psteps, pfull, step_ns, round_full,
                      capacity, rho, wait, own, streams, transfer, ttft)
