"""The two pools of a disaggregated deployment: per-layer costs, stage assembly, KV transfer.

A **prefill pool** runs prefill-only steps: each attention-DP rank processes ``tokens`` prompt
tokens per step (whole prompts and chunks of longer ones, as SGLang's and DeepSeek's prefill
servers batch them). A **decode pool** runs decode-only steps: ``s`` sequences per rank and
microbatch, no prefill chunk. Both use the per-layer terms, kernels and stage-level terms of the
aggregated model (:meth:`solver.costmodel.CostModel.layer_terms`, ``extras_terms``,
``extras_memory``), rounded to integer nanoseconds and bytes the same way, so the three serving
modes differ only in what one step carries. docs/cost-model.md, "Disaggregated serving", has
the formulas; :mod:`solver.timing` turns the stage times into the pair's figures.

The estimator (:mod:`solver.disagg`), the planner (:mod:`solver.planner.disagg`) and the
exhaustive reference all read the same arrays through :class:`PoolCosts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from solver import timing
from solver.costmodel import (
    LOGIT_BYTES,
    HotRank,
    LayerCost,
    StageExtras,
    non_decreasing,
    to_ns,
)
from solver.estimate import Prepared, batch_position, stage_memory
from solver.schema import Grid, ceil_div

# ----------------------------------------------------------------------------------------------
# Decode pool: the aggregated arrays with every step decode-only
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeResult:
    """Integer stage sums of one decode instance at its batch."""

    stage_mem_bytes: tuple[int, ...]
    stage_step_ns: tuple[int, ...]
    slowest_ns: int
    hop_ns: int
    overhead_ns: int
    tpot_ns: int
    batch: int
    s: int

    @property
    def peak_mem_bytes(self) -> int:
        return max(self.stage_mem_bytes)


# ----------------------------------------------------------------------------------------------
# Prefill pool: arrays over the token choices
# ----------------------------------------------------------------------------------------------


@dataclass
class PrefillGridCost:
    """One prefill grid costed at every token choice ``tokens[j]``: per-layer integer arrays of
    a step of typical prompts (``step``) and of a step carrying a maximum-length prompt
    (``full``), weights, KV bytes per resident token, and the stage-level extras."""

    grid: Grid
    redundant: int
    tokens: tuple[int, ...]  # the token choices, (J,)
    step: np.ndarray  # (L, J) int64 ns
    full: np.ndarray  # (L, J) int64 ns
    weight: np.ndarray  # (L,) int64 bytes
    kv_token: np.ndarray  # (L,) float: KV bytes per token of a layer on one GPU (cp aside)
    first: np.ndarray  # (J,) embedding, typical step
    last: np.ndarray  # (J,) LM head
    hop: np.ndarray  # (J,) one pipeline hop
    first_full: np.ndarray
    last_full: np.ndarray
    mem_first: int
    mem_last: np.ndarray  # (J,) LM head + logits of the prompts finishing per step
    mem_every: np.ndarray  # (J,) workspace, buffers, reserve (for steps of tokens[j])
    overhead: int
    budget: int  # the engine's memory budget per GPU, bytes
    max_input: int
    terms: list[dict[str, np.ndarray]] = field(default_factory=list)  # per layer: term -> (J,)
    extra_terms: dict[str, np.ndarray] = field(default_factory=dict)
    memory_terms: list[dict[str, int]] = field(default_factory=list)  # per j

    @property
    def num_layers(self) -> int:
        return len(self.weight)

    def resident_tokens(self, j: int) -> int:
        """Prompt tokens whose KV one attention-DP rank holds: each of the ``pp`` microbatches
        in flight carries a step of ``tokens[j]`` plus the prefix of at most one prompt longer
        than a step (at most ``max_input``), until its transfer."""
        return self.grid.pp * (self.tokens[j] + self.max_input)

    def kv_bytes(self, j: int) -> np.ndarray:
        """(L,) bytes of KV each layer holds on one GPU at token choice ``j``."""
        per_gpu = ceil_div(self.resident_tokens(j), self.grid.cp)
        return np.ceil(per_gpu * self.kv_token - 1e-6).astype(np.int64)


@dataclass(frozen=True)
class PrefillResult:
    """Integer stage sums of one prefill instance at one token choice."""

    stage_mem_bytes: tuple[int, ...]
    stage_step_ns: tuple[int, ...]
    stage_full_ns: tuple[int, ...]
    slowest_ns: int
    slowest_full_ns: int
    hop_ns: int
    overhead_ns: int
    step_ns: int  # the pool's cadence: slowest stage + hop + overhead
    round_full_ns: int  # a maximum-length prompt's step through every stage
    tokens: int

    @property
    def peak_mem_bytes(self) -> int:
        return max(self.stage_mem_bytes)


def prefill_stage_sums(gc: PrefillGridCost, j: int, bounds: list[tuple[int, int]]
                       ) -> PrefillResult:
    """Stage memory and step times of the stages ``bounds`` (inclusive layer ranges)."""
    pp = len(bounds)
    kv = gc.kv_bytes(j)
    mem, step, full = [], [], []
    for st, (a, b) in enumerate(bounds):
        m = int(gc.weight[a:b + 1].sum()) + int(kv[a:b + 1].sum()) + int(gc.mem_every[j])
        t = int(gc.step[a:b + 1, j].sum())
        f = int(gc.full[a:b + 1, j].sum())
        if st == 0:
            m += gc.mem_first
            t += int(gc.first[j])
            f += int(gc.first_full[j])
        if st == pp - 1:
            m += int(gc.mem_last[j])
            t += int(gc.last[j])
            f += int(gc.last_full[j])
        mem.append(m)
        step.append(t)
        full.append(f)
    hop = int(gc.hop[j]) if pp > 1 else 0
    slowest, slowest_full = max(step), max(full)
    return PrefillResult(
        stage_mem_bytes=tuple(mem), stage_step_ns=tuple(step), stage_full_ns=tuple(full),
        slowest_ns=slowest, slowest_full_ns=slowest_full, hop_ns=hop, overhead_ns=gc.overhead,
        step_ns=timing.prefill_step_ns(slowest, pp, hop, gc.overhead),
        round_full_ns=timing.round_ns(slowest_full, slowest, pp, hop, hop, gc.overhead),
        tokens=gc.tokens[j])


# ----------------------------------------------------------------------------------------------
# The costs of one instance's pools
# ----------------------------------------------------------------------------------------------


def receivers(cm, grid: Grid) -> int:
    """GPUs of one instance of a pool that hold distinct parts of a request's KV cache (each
    sends or receives its part over its own inter-node link): stages × KV shards over TP × CP."""
    return grid.pp * cm.kv_shard(grid.tp) * grid.cp


class PoolCosts:
    """Per-layer arrays of both pools of one instance, cached by everything they depend on
    (the layer's kind, the grid without ``pp``, the busiest rank)."""

    def __init__(self, prep: Prepared):
        self.prep = prep
        self.cm = prep.cm
        wl = prep.instance.workload
        self.tokens = tuple(prep.instance.disaggregation.prefill_tokens)
        self.input_len, self.max_input, self.output_len = (wl.input_len, wl.max_input,
                                                           wl.output_len)
        self._decode: dict[tuple, tuple[np.ndarray, dict]] = {}
        self._prefill: dict[tuple, tuple[np.ndarray, np.ndarray, dict]] = {}
        self._memory: dict[tuple, tuple[int, int, int]] = {}

    def layer_memory(self, layer: int, g: Grid, hot: HotRank | None) -> tuple[int, int, int]:
        """Weights, KV of one sequence at the mean and at the maximum context (bytes per GPU),
        as the aggregated model counts them; cached by the layer's kind."""
        cm = self.cm
        if not cm.moe[layer]:
            hot = None
        key = (cm.kind[layer], g.tp, g.cp, g.etp, g.ep, hot)
        hit = self._memory.get(key)
        if hit is None:
            hit = self._memory[key] = cm._layer_memory(layer, g, hot)
        return hit

    # -- decode ---------------------------------------------------------------------------------

    def _decode_layer(self, layer: int, g: Grid, hot: HotRank | None, s_max: int
                      ) -> tuple[np.ndarray, dict]:
        cm = self.cm
        if not cm.moe[layer]:
            hot = None
        key = (cm.kind[layer], g.tp, g.cp, g.dp, g.ep, g.etp, g.edp, hot)
        hit = self._decode.get(key)
        if hit is not None and len(hit[0]) >= s_max:
            return hit
        s = np.arange(1, s_max + 1, dtype=np.float64)
        terms = cm.layer_terms(layer, g, hot, s, 0 * s, 0.0)
        # a step never gets faster with more sequences (as the aggregated arrays)
        out = (to_ns(non_decreasing(sum(terms.values()))), terms)
        self._decode[key] = out
        return out

    def decode_layer_costs(self, grid: Grid, hot: dict[int, HotRank], s_max: int,
                           terms: bool = True) -> list[LayerCost]:
        """Every layer of a decode grid over ``s = 1..s_max`` (at least): decode-only steps
        (``avg_ns`` and ``full_max_ns`` are both the decode step; no prefill shares it); the
        per-term seconds only with ``terms`` (the breakdown)."""
        s_max = max(1, s_max)
        out = []
        for layer in range(self.prep.model.num_layers):
            ns, parts = self._decode_layer(layer, grid, hot.get(layer), s_max)
            w, kvs, kvm = self.layer_memory(layer, grid, hot.get(layer))
            out.append(LayerCost(weight_bytes=w, kv_seq_bytes=kvs, kv_max_bytes=kvm,
                                 avg_ns=ns[:s_max], full_max_ns=ns[:s_max],
                                 terms={"decode": {k: v[:s_max] for k, v in parts.items()}}
                                 if terms else {}))
        return out

    def decode_extras(self, grid: Grid, hot: dict[int, HotRank], s_max: int) -> StageExtras:
        """Embedding, LM head and hop of decode-only steps; memory as the aggregated engine
        allocates it (workspace for its token budget, logits of the decode rows)."""
        cm, m = self.cm, self.prep.model
        s_max = max(1, s_max)
        s = np.arange(1, s_max + 1, dtype=np.float64)
        share = max((h.share for h in hot.values()), default=0.0)
        terms = cm.extras_terms(grid, s, s)
        memory = cm.extras_memory(grid, share, cm.budget)
        logits = (s * math.ceil(m.vocab_size / grid.tp) * LOGIT_BYTES).astype(np.int64)
        ns = {k: to_ns(non_decreasing(v)) for k, v in terms.items()}
        return StageExtras(
            first_avg_ns=ns["embedding"], last_avg_ns=ns["lm_head"],
            first_full_ns=ns["embedding"], last_full_ns=ns["lm_head"],
            hop_avg_ns=ns["pp_comm"], hop_full_ns=ns["pp_comm"],
            mem_first=memory["embedding"], mem_last=memory["lm_head"] + logits,
            mem_every=(memory["activation_workspace"] + memory["comm_buffers"]
                       + memory["runtime_reserve"]),
            memory_terms=memory, terms={"decode": terms})

    def decode_result(self, costs: list[LayerCost], extras: StageExtras,
                      bounds: list[tuple[int, int]], grid: Grid, batch: int) -> DecodeResult:
        """Stage memory and decode steps of one decode instance at ``batch``."""
        pp = len(bounds)
        q, s = batch_position(grid, batch)
        i = s - 1
        mem, step = [], []
        for st, (a, b) in enumerate(bounds):
            mem.append(stage_memory(costs, extras, a, b, st, pp, q, s))
            t = sum(int(c.avg_ns[i]) for c in costs[a:b + 1])
            if st == 0:
                t += int(extras.first_avg_ns[i])
            if st == pp - 1:
                t += int(extras.last_avg_ns[i])
            step.append(t)
        hop = int(extras.hop_avg_ns[i]) if pp > 1 else 0
        slowest = max(step)
        return DecodeResult(stage_mem_bytes=tuple(mem), stage_step_ns=tuple(step),
                            slowest_ns=slowest, hop_ns=hop, overhead_ns=self.cm.overhead_ns,
                            tpot_ns=timing.tpot_ns(slowest, pp, hop, self.cm.overhead_ns),
                            batch=batch, s=s)

    # -- prefill --------------------------------------------------------------------------------

    def _prefill_layer(self, layer: int, g: Grid, hot: HotRank | None
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
        cm = self.cm
        if not cm.moe[layer]:
            hot = None
        key = (cm.kind[layer], g.tp, g.cp, g.dp, g.ep, g.etp, g.edp, hot)
        hit = self._prefill.get(key)
        if hit is not None:
            return hit
        c = np.array(self.tokens, dtype=np.float64)
        typical = cm.layer_terms(layer, g, hot, 0 * c, c, (self.input_len + 1) / 2)
        longest = cm.layer_terms(layer, g, hot, 0 * c, c, (self.max_input + 1) / 2)
        out = (to_ns(sum(typical.values())), to_ns(sum(longest.values())), typical)
        self._prefill[key] = out
        return out

    def prefill_fits(self, grid: Grid, hot: dict[int, HotRank]) -> bool:
        """A necessary memory condition, before costing: at some token choice the stages
        together hold every layer's weights and resident KV (the sums
        :func:`prefill_stage_sums` adds, over all stages)."""
        cm, m = self.cm, self.prep.model
        weights = sum(self.layer_memory(layer, grid, hot.get(layer))[0]
                      for layer in range(m.num_layers))
        kv_token = sum(cm.kv_token[layer] for layer in range(m.num_layers)) \
            / cm.kv_shard(grid.tp)
        share = max((h.share for h in hot.values()), default=0.0)
        for tokens in self.tokens:
            memory = cm.extras_memory(grid, share, float(tokens))
            resident = ceil_div(grid.pp * (tokens + self.max_input), grid.cp)
            need = (weights + resident * kv_token * (1 - 1e-9) + memory["embedding"]
                    + memory["lm_head"] + grid.pp * (memory["activation_workspace"]
                                                     + memory["comm_buffers"]
                                                     + memory["runtime_reserve"]))
            if need <= grid.pp * cm.memory_budget:
                return True
        return False

    def prefill_grid(self, grid: Grid, hot: dict[int, HotRank], redundant: int
                     ) -> PrefillGridCost:
        """A prefill grid at every token choice."""
        cm, m = self.cm, self.prep.model
        step, full, weight, kv_token, terms = [], [], [], [], []
        for layer in range(m.num_layers):
            h = hot.get(layer) if cm.moe[layer] else None
            t, f, parts = self._prefill_layer(layer, grid, h)
            step.append(t)
            full.append(f)
            terms.append(parts)
            weight.append(self.layer_memory(layer, grid, h)[0])
            kv_token.append(cm.kv_token[layer] / cm.kv_shard(grid.tp))
        c = np.array(self.tokens, dtype=np.float64)
        # LM-head rows: the last position of each prompt that finishes in the step
        rows = c / self.input_len
        share = max((h.share for h in hot.values()), default=0.0)
        typical = cm.extras_terms(grid, c / grid.cp, rows)
        memory = [cm.extras_memory(grid, share, float(x)) for x in self.tokens]
        logit_rows = np.array([ceil_div(x, self.input_len) for x in self.tokens], dtype=np.int64)
        ns = {k: to_ns(v) for k, v in typical.items()}
        return PrefillGridCost(
            grid=grid, redundant=redundant, tokens=self.tokens,
            step=np.stack(step), full=np.stack(full),
            weight=np.array(weight, dtype=np.int64), kv_token=np.array(kv_token),
            first=ns["embedding"], last=ns["lm_head"], hop=ns["pp_comm"],
            first_full=ns["embedding"], last_full=ns["lm_head"],
            mem_first=memory[0]["embedding"],
            mem_last=memory[0]["lm_head"] + logit_rows * math.ceil(m.vocab_size / grid.tp)
            * LOGIT_BYTES,
            mem_every=np.array([x["activation_workspace"] + x["comm_buffers"]
                                + x["runtime_reserve"] for x in memory], dtype=np.int64),
            overhead=cm.overhead_ns, budget=cm.memory_budget, max_input=self.max_input,
            terms=terms, extra_terms=typical, memory_terms=memory)

    # -- the transfer ---------------------------------------------------------------------------

    def transfer_bytes(self) -> list[float]:
        """Bytes of a maximum-length prompt's KV cache per layer (the model's KV precision;
        sliding-window layers keep their window)."""
        cm = self.cm
        return [cm._context(layer, self.max_input) * cm.kv_token[layer]
                for layer in range(self.prep.model.num_layers)]

    def transfer_ns(self, gc: PrefillGridCost, j: int, streams: int) -> int:
        """The exposed KV transfer of a maximum-length prompt from a prefill instance of
        ``gc`` at token choice ``j`` over ``streams`` inter-node links
        (:func:`solver.timing.kv_transfer_ns`)."""
        link = self.cm.k.inter
        overlap = self.prep.instance.disaggregation.kv_transfer == "layerwise"
        return timing.kv_transfer_ns(
            self.transfer_bytes(), streams, link.bw * link.efficiency, link.lat,
            [int(x) for x in gc.full[:, j]] if overlap else None)


# ----------------------------------------------------------------------------------------------
# One pool's rate, as the fidelity harness reads it
# ----------------------------------------------------------------------------------------------


def _hot_of(prep: Prepared, degrees, redundant: int | None, placement=None
            ) -> tuple[dict[int, HotRank], int]:
    from solver.rules import default_redundant
    from solver.schema import Plan

    red = redundant if redundant is not None else default_redundant(prep.instance.search,
                                                                     degrees.ep)
    probe = Plan(degrees=degrees, batch=1, redundant_experts=red, placement=placement)
    return prep.hot_from_placement(prep.placement_of(probe, red)[0]), red


def decode_tpot_ns(prep: Prepared, plan) -> int:
    """TPOT of a decode-only instance at the plan's batch (balanced stages unless given)."""
    from solver.estimate import balanced_stages

    grid = Grid.of(plan.degrees)
    hot, _ = _hot_of(prep, plan.degrees, plan.redundant_experts, plan.placement)
    pools = PoolCosts(prep)
    _, s = batch_position(grid, plan.batch)
    stages = plan.stages or balanced_stages(prep.model.num_layers, grid.pp)
    bounds = [(st.first_layer, st.last_layer) for st in stages]
    return pools.decode_result(pools.decode_layer_costs(grid, hot, s),
                               pools.decode_extras(grid, hot, s), bounds, grid,
                               plan.batch).tpot_ns


def decode_rate(prep: Prepared, plan) -> float:
    """Output tokens/s of one decode-only instance."""
    return timing.rate(plan.batch, decode_tpot_ns(prep, plan))


def prefill_rate(prep: Prepared, plan, tokens_per_rank: int, prompt_len: int | None = None
                 ) -> float:
    """Input tokens/s of one prefill-only instance whose attention-DP ranks each prefill
    ``tokens_per_rank`` tokens per step (prompts of the workload's ``input_len``; a
    ``prompt_len`` given must be that length)."""
    from solver.estimate import balanced_stages

    if prompt_len is not None and prompt_len != prep.instance.workload.input_len:
        raise ValueError(f"prompt_len {prompt_len} is not the workload's input_len "
                         f"{prep.instance.workload.input_len}")
    inst = prep.instance
    if tuple(inst.disaggregation.prefill_tokens) != (tokens_per_rank,):
        opts = inst.disaggregation.model_copy(update={"prefill_tokens": (tokens_per_rank,)})
        prep = Prepared(inst.model_copy(update={"disaggregation": opts}))
    grid = Grid.of(plan.degrees)
    hot, red = _hot_of(prep, plan.degrees, plan.redundant_experts, plan.placement)
    gc = PoolCosts(prep).prefill_grid(grid, hot, red)
    stages = plan.stages or balanced_stages(prep.model.num_layers, grid.pp)
    res = prefill_stage_sums(gc, 0, [(st.first_layer, st.last_layer) for st in stages])
    return float(timing.prefill_capacity(1, grid.dp, tokens_per_rank, res.step_ns))
