"""Hypothesis strategies: small two-pool (``serving: disaggregated``) instances that the
exhaustive two-pool reference solves in about a second.

Models, workloads, engines, loads and search options come from :mod:`tests.strategies`. On top:
a planned request rate drawn around what a random decode plan serves (1-3 replicas of it), TPOT
and TTFT targets around a random decode and prefill plan's figures, two or three prefill token
choices, layer-wise or whole KV transfers and, in a third of the instances, an inter-node link
slow enough (0.1-2 GB/s) that the transfer decides which pair fits the TTFT budget.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from solver import timing
from solver.disagg import evaluate_decode, evaluate_prefill, pair_figures
from solver.estimate import Prepared, evaluate
from solver.pool_space import PoolSpace
from solver.pools import PoolCosts, receivers
from solver.schema import (
    DisaggregationOptions,
    Instance,
    Plan,
    PrefillPlan,
    Targets,
)
from tests.strategies import (
    HARDWARE,
    _hardware,
    _scaled,
    small_engines,
    small_loads,
    small_models,
    small_search,
    small_workloads,
)

#: The reference stops here (both pools together) when the instance sets no max_gpus.
GPU_CAP = 10


@st.composite
def small_disagg_instances(draw: st.DrawFn) -> Instance:
    model = draw(small_models(), label="model")
    workload = draw(small_workloads(), label="workload")
    search = draw(small_search(), label="search")
    if "replicas" in search.fix:  # one replica count for both pools: rarely satisfiable
        search = search.model_copy(update={"fix": {}})
    load = draw(small_loads(), label="expert_load")
    engine = draw(small_engines(), label="engine")
    hw_name = draw(st.sampled_from(HARDWARE), label="hardware")
    gpn = draw(st.sampled_from([2, 4, 8]), label="gpus_per_node")
    reserved = draw(st.sampled_from([0.0, 0.1]), label="reserved_gb")
    slow_link = draw(st.sampled_from([None, None, 0.1, 0.5, 2.0]), label="inter_node_gb_s")
    tokens = draw(st.lists(st.sampled_from([128, 256, 512, 1024, 2048]), min_size=1, max_size=3,
                           unique=True), label="prefill_tokens")
    options = DisaggregationOptions(
        prefill_tokens=tuple(tokens),
        kv_transfer=draw(st.sampled_from(["layerwise", "after_prefill"]), label="kv_transfer"))
    extra = {} if slow_link is None else {"inter_node_gb_s": slow_link}
    roomy = _hardware(hw_name, gpus_per_node=gpn, reserved_gb=reserved, **extra)
    base = Instance(name="hypothesis-disagg", model=model, hardware=roomy, workload=workload,
                    expert_load=load, search=search, engine=engine, disaggregation=options)
    batch = workload.batch_bounds[0]
    one_gpu = evaluate(base, Plan(degrees={}, batch=batch)).metrics.peak_memory_gb
    fraction = draw(st.sampled_from([1.5, 1.0, 3.0, 0.7, 10.0]), label="hbm_frac")
    hbm = (reserved + max(1e-3, fraction * (one_gpu - reserved))) / engine.memory_fraction
    hardware = _hardware(hw_name, gpus_per_node=gpn, reserved_gb=reserved,
                         hbm_gb=float(f"{hbm:.6g}"), **extra)
    probe_base = base.model_copy(update={"hardware": hardware})

    # A probe decode plan and a probe prefill plan of one to four GPUs each.
    dspace, pspace = PoolSpace(probe_base, "decode"), PoolSpace(probe_base, "prefill")
    lo, hi = workload.batch_bounds
    decodes = [(g, b) for n in range(1, 5) for g in dspace.grids(n) for b in range(lo, hi + 1)
               if not dspace.violations(g, b, dspace.redundant(g.ep))]
    prefills = [g for n in range(1, 5) for g in pspace.grids(n)
                if not pspace.violations(g, 1, pspace.redundant(g.ep))]
    if not decodes or not prefills:
        rate = 1000.0
        return probe_base.model_copy(update={
            "serving": "disaggregated", "workload": workload.model_copy(
                update={"targets": Targets(min_output_tokens_per_s=rate, max_gpus=GPU_CAP)})})
    dgrid, dbatch = decodes[draw(st.integers(0, len(decodes) - 1), label="probe_decode")]
    pgrid = prefills[draw(st.integers(0, len(prefills) - 1), label="probe_prefill")]
    # the decode probe's rate needs no target: evaluate the pools directly
    prep = Prepared(probe_base.model_copy(update={"workload": workload.model_copy(
        update={"targets": Targets(min_output_tokens_per_s=1.0)})}))
    dc = evaluate_decode(prep, Plan(degrees=dgrid.degrees(), batch=dbatch))
    replicas = draw(st.integers(1, 3), label="rate_replicas")
    capacity = replicas * dbatch * timing.NS_PER_S / dc.result.tpot_ns
    rate = _scaled(draw, capacity, "rate_scale", upper=False)
    fields: dict[str, float | int] = {"min_output_tokens_per_s": rate}
    if draw(st.integers(0, 2), label="has_tpot") == 0:
        fields["max_tpot_s"] = _scaled(draw, dc.result.tpot_ns / timing.NS_PER_S, "tpot_scale",
                                       upper=True)
    if draw(st.integers(0, 1), label="has_ttft") == 0:
        rated = Prepared(probe_base.model_copy(update={"workload": workload.model_copy(
            update={"targets": Targets(min_output_tokens_per_s=rate)})}))
        token = options.prefill_tokens[draw(st.integers(0, len(options.prefill_tokens) - 1),
                                            label="probe_tokens")]
        pf = evaluate_prefill(rated, PrefillPlan(degrees=pgrid.degrees(), tokens_per_step=token))
        pools = PoolCosts(rated)
        _, wait, own, transfer, _ = pair_figures(
            rated, pools, pf.cost, 0, pf.result, 1, receivers(rated.cm, dgrid))
        base_ttft = own + transfer + (0 if wait is None else min(float(wait), 2.0 * own))
        fields["max_ttft_s"] = _scaled(draw, base_ttft * 2 / timing.NS_PER_S, "ttft_scale",
                                       upper=True)
    if draw(st.integers(0, 2), label="has_max_gpus") == 0:
        fields["max_gpus"] = max(2, math.floor(_scaled(draw, 6, "max_gpus_scale",
                                                       upper=True)))
    else:
        fields["max_gpus"] = GPU_CAP
    fields["max_gpus"] = min(int(fields["max_gpus"]), GPU_CAP)
    return Instance.model_validate(probe_base.model_copy(update={
        "serving": "disaggregated",
        "workload": workload.model_copy(update={"targets": Targets(**fields)})}).model_dump())
