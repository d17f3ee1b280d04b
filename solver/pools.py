"""Rates of a pool that only prefills or only decodes (disaggregated serving).

A prefill pool runs prefill-only steps: each attention-DP rank processes ``tokens`` prompt tokens
per step (whole prompts of ``prompt_len``, as SGLang's and DeepSeek's prefill nodes batch them).
A decode pool runs decode-only steps with ``s`` sequences per rank and microbatch, no prefill
chunks. Both use the same per-layer terms, kernels and stage assembly as the aggregated model
(:mod:`solver.costmodel`), so the three modes differ only in what one step carries.
"""

from __future__ import annotations

import numpy as np

from solver import timing
from solver.costmodel import to_ns
from solver.estimate import Prepared, balanced_stages, batch_position
from solver.rules import default_redundant
from solver.schema import Grid, Plan


def _stage_bounds(prep: Prepared, plan: Plan) -> list[tuple[int, int]]:
    stages = plan.stages or balanced_stages(prep.model.num_layers, plan.degrees.pp)
    return [(st.first_layer, st.last_layer) for st in stages]


def _hot(prep: Prepared, plan: Plan):
    d = plan.degrees
    red = (plan.redundant_experts if plan.redundant_experts is not None
           else default_redundant(prep.instance.search, d.ep))
    return prep.hot_from_placement(prep.placement_of(plan, red)[0])


def _stage_times(prep: Prepared, plan: Plan, n_dec: float, n_pf: float, pairs: float
                 ) -> tuple[list[int], int]:
    """Per-stage step time (ns) of one step with ``n_dec`` decode and ``n_pf`` prefill tokens
    per attention-DP rank, and the pipeline hop."""
    cm, grid = prep.cm, Grid.of(plan.degrees)
    hot = _hot(prep, plan)
    dec, pf = np.array([float(n_dec)]), np.array([float(n_pf)])
    per_layer = [int(to_ns(sum(cm.layer_terms(layer, grid, hot.get(layer), dec, pf,
                                              pairs).values()))[0])
                 for layer in range(prep.model.num_layers)]
    s = max(1, int(n_dec))
    share = max((h.share for h in hot.values()), default=0.0)
    ex = cm.stage_extras(grid, share, s)
    step = "full" if n_pf > 0 else "decode"
    bounds = _stage_bounds(prep, plan)
    times = []
    for st, (a, b) in enumerate(bounds):
        t = sum(per_layer[a:b + 1])
        if st == 0:
            t += int(to_ns(ex.terms[step]["embedding"][s - 1]))
        if st == len(bounds) - 1:
            t += int(to_ns(ex.terms[step]["lm_head"][s - 1]))
        times.append(t)
    hop = int(to_ns(ex.terms[step]["pp_comm"][s - 1])) if grid.pp > 1 else 0
    return times, hop


def decode_tpot_ns(instance: Prepared, plan: Plan) -> int:
    """TPOT of a decode-only pool at the plan's batch."""
    grid = Grid.of(plan.degrees)
    _, s = batch_position(grid, plan.batch)
    times, hop = _stage_times(instance, plan, s, 0, 0.0)
    return timing.tpot_ns(max(times), grid.pp, hop, instance.cm.overhead_ns)


def decode_rate(instance: Prepared, plan: Plan) -> float:
    """Output tokens/s of one decode-only instance."""
    return timing.rate(plan.batch, decode_tpot_ns(instance, plan))


def prefill_rate(instance: Prepared, plan: Plan, tokens_per_rank: int, prompt_len: int
                 ) -> float:
    """Input tokens/s of one prefill-only instance whose attention-DP ranks each prefill
    ``tokens_per_rank`` tokens of ``prompt_len``-token prompts per step."""
    grid = Grid.of(plan.degrees)
    times, hop = _stage_times(instance, plan, 0, tokens_per_rank, (prompt_len + 1) / 2)
    step_ns = max(times) + (hop if grid.pp > 1 else 0) + instance.cm.overhead_ns
    return grid.dp * tokens_per_rank * timing.NS_PER_S / step_ns
