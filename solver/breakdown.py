"""The per-term breakdown of an evaluated plan: where memory and time go, and where each time
term's number comes from (a measured curve or the roofline fallback). Presentation only: every
figure is read from the :class:`~solver.estimate.Evaluation`, nothing is recomputed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from solver import timing
from solver.costmodel import BYTES_PER_GB
from solver.schema import ceil_div

if TYPE_CHECKING:
    from solver.estimate import Evaluation, Prepared
    from solver.schema import Grid

NS_PER_S = timing.NS_PER_S


def term_sources(prep: Prepared, grid: Grid) -> dict[str, str]:
    """Where each time term comes from: a measured model (named) or the roofline."""
    cm, k = prep.cm, prep.cm.k
    tp = grid.tp
    return {
        "attn_proj": k.source(f"gemm.{cm.w_fmt}"),
        "attn_core": (f"decode: {k.source(cm.decode_attn_key)}; prefill: "
                      f"{k.source(cm.prefill_attn_key)}"),
        "ffn_dense": k.source(f"gemm.{cm.w_fmt}"),
        "moe_experts": k.source(f"moe.{cm.e_fmt}.balanced"),
        "ep_comm": _deepep_source(prep, grid),
        "tp_comm": k.source(k.all_reduce_key(tp, k.intra)),
        "norms": k.elementwise_source(),
        "cp_comm": k.source("comm.p2p"),
        "overlap": "two-batch overlap hides expert-parallel communication behind compute",
        "embedding": "HBM read" + (" at datasheet bandwidth" if k.cal else
                                   f" at {prep.instance.hardware.hbm_efficiency:g} of it"),
        "lm_head": k.source(f"gemm.{cm.w_fmt}"),
        "pp_comm": k.source("comm.p2p"),
        "step_overhead": f"engine constant ({prep.instance.engine.name}, "
                         f"{prep.instance.engine.overhead_us:g} µs per step)",
    }


def _deepep_source(prep: Prepared, grid: Grid) -> str:
    """The measured DeepEP curves the cost model reads for ``grid`` (the nodes its expert group
    spans), as costmodel._dispatch_combine chooses them."""
    cm, k = prep.cm, prep.cm.k
    if cm.token_sets(grid) <= 1:
        return "none: every token copy stays in its rank's own group"
    nodes = ceil_div(grid.etp * grid.ep, prep.instance.hardware.gpus_per_node)
    out = []
    for mode, label in (("ll", "decode"), ("normal", "prefill")):
        found = k.deepep(cm.deepep_families, mode, "dispatch",
                         prep.instance.engine.dispatch_precision, nodes)
        out.append(f"{label}: " + (found[1].label if found else k.source("comm.a2a")))
    return "; ".join(out)


def _step_terms(ev: Evaluation, step: str, first: int, last: int, stage: int, pp: int
                ) -> dict[str, float]:
    i = ev.result.s - 1
    out: dict[str, float] = {}
    for c in ev.costs[first:last + 1]:
        for name, v in c.terms[step].items():
            out[name] = out.get(name, 0.0) + float(v[i])
    extras_step = "full" if step == "full_max" else step
    ex = ev.extras.terms[extras_step]
    if stage == 0:
        out["embedding"] = float(ex["embedding"][i])
    if stage == pp - 1:
        out["lm_head"] = float(ex["lm_head"][i])
    if pp > 1:
        out["pp_comm"] = float(ex["pp_comm"][i])
    return out


def breakdown(prep: Prepared, ev: Evaluation, bounds: list[tuple[int, int]],
              idle_terms: dict[str, float]) -> dict[str, Any]:
    a, ex = ev.result, ev.extras
    pp = len(bounds)
    q = -(-ev.batch // ev.grid.dp)
    full = max(range(pp), key=lambda s: a.stage_mem_bytes[s])
    first, last = bounds[full]
    layers = ev.costs[first:last + 1]
    kv = max(q * sum(c.kv_seq_bytes for c in layers), sum(c.kv_max_bytes for c in layers))
    weights = sum(c.weight_bytes for c in layers)
    t = ex.memory_terms
    if full == 0:
        weights += ex.mem_first
    logits = 0
    if full == pp - 1:
        logits = int(ex.mem_last[a.s - 1]) - t["lm_head"]
        weights += t["lm_head"]
    memory = {
        "stage": full,
        "terms_gb": {
            "weights": weights / BYTES_PER_GB,
            "kv_cache": kv / BYTES_PER_GB,
            "activation_workspace": (t["activation_workspace"] + logits) / BYTES_PER_GB,
            "comm_buffers": t["comm_buffers"] / BYTES_PER_GB,
            "runtime_reserve": t["runtime_reserve"] / BYTES_PER_GB,
        },
        "total_gb": a.stage_mem_bytes[full] / BYTES_PER_GB,
        "budget_gb": prep.cm.memory_budget / BYTES_PER_GB,
        "capacity_gb": prep.instance.hardware.hbm_gb,
    }
    slow = max(range(pp), key=lambda s: a.stage_avg_ns[s])
    sf, sl = bounds[slow]
    slow_full = max(range(pp), key=lambda s: a.stage_full_ns[s])
    ff, fl = bounds[slow_full]
    sources = term_sources(prep, ev.grid)
    rounds = a.rounds
    wait = None
    if rounds is not None:
        own = -(-prep.instance.workload.max_input // (prep.cm.budget - a.s))
        wait = float(rounds) - own
    time = {
        "stage": slow,
        "decode_step_s": _step_terms(ev, "decode", sf, sl, slow, pp),
        "full_step_s": _step_terms(ev, "full", sf, sl, slow, pp),
        "average_step_s": a.slowest_ns / NS_PER_S,
        "prefill_share": float(a.prefill_share) if a.prefill_share is not None else None,
        "tpot": {
            "slowest_stage_step_s": a.slowest_ns / NS_PER_S,
            "hop_s": a.hop_ns / NS_PER_S if pp > 1 else 0.0,
            "step_overhead_s": a.overhead_ns / NS_PER_S,
            "microbatches": pp,
            "tpot_s": a.tpot_ns / NS_PER_S,
        },
        "ttft": {
            "stage": slow_full,
            "full_step_max_prompt_s": _step_terms(ev, "full_max", ff, fl, slow_full, pp),
            "round_s": a.round_ns / NS_PER_S,
            "wait_rounds": wait,
            "own_chunks": None if wait is None else float(rounds) - wait,
            "ttft_s": a.ttft_ns / NS_PER_S,
        },
        "ttft_idle_s": idle_terms,
        "sources": sources,
    }
    stages = [
        {"first_layer": st_first, "last_layer": st_last,
         "memory_gb": a.stage_mem_bytes[i] / BYTES_PER_GB,
         "step_ms": a.stage_avg_ns[i] / 1e6, "full_step_ms": a.stage_full_ns[i] / 1e6}
        for i, (st_first, st_last) in enumerate(bounds)
    ]
    return {"memory": memory, "time": time, "stages": stages}
