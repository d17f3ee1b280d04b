"""Structural rules of a plan: one named function per rule, shared by everyone who judges plans.

:mod:`solver.verify` reports every rule a plan breaks; :mod:`solver.space` (the plan space the
planner searches and the reference enumerates) admits exactly the degree tuples no rule rejects.
So there is one definition of a valid plan shape, and a rule changed here changes for all of them.

Each rule takes a :class:`Shape` (the degrees, batch and redundant expert slots of an instance
of the deployment, with the model, GPU, engine and search options they are judged against) and
returns a :class:`Violation` with the numbers, or None. Rules on the costed result (memory,
targets) and on a plan's stages and placement live in :mod:`solver.verify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from solver import timing
from solver.schema import EngineSpec, Grid, HardwareSpec, ModelSpec, SearchOptions, Workload


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``rule`` is a stable identifier; ``message`` carries the numbers."""

    rule: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


@dataclass(frozen=True)
class Shape:
    """What the structural rules look at: one instance's degrees, its batch and its redundant
    expert slots per MoE layer, and what they are judged against."""

    model: ModelSpec
    hw: HardwareSpec
    search: SearchOptions
    engine: EngineSpec
    workload: Workload
    grid: Grid
    batch: int
    redundant: int
    #: "" for an aggregated deployment, else the pool of a two-pool one ("prefill", "decode")
    pool: str = ""

    @property
    def slots(self) -> int:
        return self.model.num_experts + self.redundant

    @property
    def moe_span(self) -> int:
        return self.grid.etp * self.grid.ep


Rule = Callable[[Shape], "Violation | None"]


def default_redundant(search: SearchOptions, ep: int) -> int:
    """Redundant slots a plan that does not say uses: the instance's ``redundant_experts`` with
    expert parallelism, none without (a replica on the same GPU takes no load off it)."""
    return search.redundant_experts if ep > 1 else 0


def fits_node(span: int, gpus_per_node: int) -> bool:
    """A group of ``span`` consecutive GPUs sits inside one node iff it tiles nodes exactly."""
    return span <= gpus_per_node and gpus_per_node % span == 0


def node_layout(gpus_per_instance: int, gpus_per_node: int, group: int) -> tuple[int, int]:
    """``(nodes, GPUs per node)`` of one instance as the export lays it out: the fewest nodes
    with equal GPU counts that keep every TP·CP group of ``group`` GPUs inside a node (the
    largest divisor of the instance's GPUs that fits a node and is a multiple of ``group``;
    when the group is wider than a node, the largest divisor that fits one)."""
    gpi, gpn = gpus_per_instance, gpus_per_node
    fits = [k for k in range(1, min(gpi, gpn) + 1) if gpi % k == 0 and k % group == 0]
    if not fits:
        fits = [k for k in range(1, min(gpi, gpn) + 1) if gpi % k == 0]
    per_node = max(fits)
    return gpi // per_node, per_node


# -- the GPU identity --------------------------------------------------------------------------

def expert_grid_identity(x: Shape) -> Violation | None:
    """Parallel folding: the MoE grid etp·ep·edp covers the attention grid tp·cp·dp exactly."""
    g = x.grid
    if g.etp * g.ep * g.edp == g.tp * g.cp * g.dp:
        return None
    return Violation(
        "gpu_identity",
        f"expert grid etp·ep·edp = {g.etp}·{g.ep}·{g.edp} = {g.etp * g.ep * g.edp} must equal "
        f"the attention grid tp·cp·dp = {g.tp}·{g.cp}·{g.dp} = {g.tp * g.cp * g.dp}", "degrees")


# -- tensor parallelism ------------------------------------------------------------------------

def tp_divides_heads(x: Shape) -> Violation | None:
    heads = x.model.attention.num_heads
    if heads % x.grid.tp == 0:
        return None
    return Violation("divisibility", f"tp = {x.grid.tp} does not divide the {heads} attention "
                     "heads", "degrees.tp")


def tp_fits_kv_heads(x: Shape) -> Violation | None:
    """GQA: each TP rank holds whole KV heads (tp divides them) or a KV head is replicated over
    an equal number of ranks (tp a multiple of them)."""
    a, tp = x.model.attention, x.grid.tp
    if a.kind != "gqa":
        return None
    kv = a.num_kv_heads
    if (tp <= kv and kv % tp == 0) or (tp > kv and tp % kv == 0):
        return None
    return Violation("divisibility", f"tp = {tp} neither divides nor is a multiple of the {kv} KV "
                     "heads", "degrees.tp")


def tp_divides_dense_width(x: Shape) -> Violation | None:
    m, tp = x.model, x.grid.tp
    if not m.dense_layers or m.dense_ffn_width % tp == 0:
        return None
    return Violation("divisibility", f"tp = {tp} does not divide the dense FFN width "
                     f"{m.dense_ffn_width}", "degrees.tp")


def tp_divides_shared_width(x: Shape) -> Violation | None:
    m, tp = x.model, x.grid.tp
    if not m.num_shared_experts or not m.moe_layers or m.shared_width % tp == 0:
        return None
    return Violation("divisibility", f"tp = {tp} does not divide the shared-expert width "
                     f"{m.shared_width}", "degrees.tp")


def tp_within_node(x: Shape) -> Violation | None:
    """TP and CP groups exchange data every layer: inside a node unless allowed to cross."""
    g, gpn = x.grid, x.hw.gpus_per_node
    if x.search.tp_cross_node or fits_node(g.tp * g.cp, gpn):
        return None
    return Violation("node_boundary", f"a TP·CP group of {g.tp}·{g.cp} = {g.tp * g.cp} GPUs does "
                     f"not fit inside {gpn}-GPU nodes (tp·cp must divide {gpn}; set "
                     "search.tp_cross_node to allow)", "degrees.tp")


def etp_within_node(x: Shape) -> Violation | None:
    """Expert tensor parallelism reduces partial sums every MoE layer, like TP: its group stays
    inside a node unless TP may cross nodes."""
    g, gpn = x.grid, x.hw.gpus_per_node
    if x.search.tp_cross_node or g.etp == 1 or fits_node(g.etp, gpn):
        return None
    return Violation("node_boundary", f"an expert-TP group of etp = {g.etp} GPUs does not fit "
                     f"inside {gpn}-GPU nodes (etp must divide {gpn}; set search.tp_cross_node "
                     "to allow)", "degrees.etp")


# -- experts -----------------------------------------------------------------------------------

def no_moe_no_expert_degrees(x: Shape) -> Violation | None:
    if x.model.moe_layers or x.moe_span == 1:
        return None
    return Violation("divisibility", "the model has no MoE layers: ep and etp must be 1",
                     "degrees.ep")


def redundant_needs_ep(x: Shape) -> Violation | None:
    """Redundant slots hold replicas of hot experts on other ranks; with ep = 1 there are none."""
    if x.redundant == 0 or x.grid.ep > 1 or not x.model.moe_layers:
        return None
    return Violation("experts", f"{x.redundant} redundant expert slots need ep > 1 (a replica on "
                     "the same GPU takes no load off it)", "redundant_experts")


def ep_divides_slots(x: Shape) -> Violation | None:
    """Every EP rank holds the same number of slots: ep divides experts + redundant slots."""
    if not x.model.moe_layers:
        return None
    ep, slots, e = x.grid.ep, x.slots, x.model.num_experts
    if ep > slots:
        return Violation("divisibility", f"ep = {ep} exceeds the {slots} expert slots ({e} routed "
                         f"experts + {x.redundant} redundant) per layer", "degrees.ep")
    if slots % ep:
        return Violation("divisibility", f"ep = {ep} does not divide the {slots} expert slots "
                         f"({e} routed experts + {x.redundant} redundant) per layer",
                         "degrees.ep")
    return None


def slots_fit_distinct_experts(x: Shape) -> Violation | None:
    """A rank's slots hold distinct experts, so it has at most as many slots as experts."""
    if not x.model.moe_layers or x.slots % x.grid.ep:
        return None
    per_rank, e = x.slots // x.grid.ep, x.model.num_experts
    if per_rank <= e:
        return None
    return Violation("experts", f"each EP rank would hold {per_rank} slots but there are only {e} "
                     "distinct experts", "redundant_experts")


def etp_divides_expert_width(x: Shape) -> Violation | None:
    m, etp = x.model, x.grid.etp
    if not m.moe_layers or m.expert_ffn_width % etp == 0:
        return None
    return Violation("divisibility", f"etp = {etp} does not divide the expert width "
                     f"{m.expert_ffn_width}", "degrees.etp")


def moe_group_nests_tp(x: Shape) -> Violation | None:
    """An MoE group (etp·ep GPUs) lies inside one TP group or is made of whole TP groups, so
    tokens are either already present on every GPU of the group or dispatched between whole TP
    groups (how vLLM, SGLang and TensorRT-LLM fold them)."""
    span, tp = x.moe_span, x.grid.tp
    if not x.model.moe_layers or span % tp == 0 or tp % span == 0:
        return None
    return Violation("divisibility", f"the MoE group of etp·ep = {span} GPUs and the TP group of "
                     f"{tp} must nest (one divides the other)", "degrees.ep")


def ep_within_node(x: Shape) -> Violation | None:
    gpn, span = x.hw.gpus_per_node, x.moe_span
    if not x.model.moe_layers or x.search.ep_cross_node or span == 1 or fits_node(span, gpn):
        return None
    return Violation("node_boundary", f"an EP group spans etp·ep = {span} GPUs, which does not fit "
                     f"inside {gpn}-GPU nodes (search.ep_cross_node is false)", "degrees.ep")


def whole_quantisation_blocks(x: Shape) -> Violation | None:
    """Block-quantised weights are sharded in whole blocks: FP8 128×128 blocks need every
    TP-sharded width (dense FFN, shared experts, attention heads) divided by tp, and the expert
    width divided by etp, to stay multiples of the block. Engines refuse other shardings (vLLM:
    "... is not divisible by weight quantization block_n"). MXFP4 experts carry no such rule:
    the engines' kernels pad their shards."""
    m, g = x.model, x.grid
    checks: list[tuple[str, int, int, int, str]] = []
    block = m.weight_block_size
    if block:
        a = m.attention
        if m.moe_layers and m.expert_weight_precision == m.weight_precision:
            checks.append(("expert width", m.expert_ffn_width, g.etp, block, "degrees.etp"))
        if m.dense_layers:
            checks.append(("dense FFN width", m.dense_ffn_width, g.tp, block, "degrees.tp"))
        if m.num_shared_experts and m.moe_layers:
            checks.append(("shared-expert width", m.shared_width, g.tp, block, "degrees.tp"))
        if a.kind == "gqa":
            checks.append(("query projection width", a.num_heads * a.head_dim, g.tp, block,
                           "degrees.tp"))
    for what, width, parts, blk, field in checks:
        if width % parts == 0 and (width // parts) % blk:
            name = "etp" if field.endswith("etp") else "tp"
            return Violation("quantisation_blocks", f"{name} = {parts} splits the {what} "
                             f"{width} into shards of {width // parts}, not a multiple of the "
                             f"{blk}-element quantisation block", field)
    return None


# -- batch and pipeline ------------------------------------------------------------------------

def dp_divides_batch(x: Shape) -> Violation | None:
    if x.batch % x.grid.dp == 0:
        return None
    return Violation("divisibility", f"dp = {x.grid.dp} does not divide the batch {x.batch} "
                     "(each attention-DP rank serves the same number of sequences)", "batch")


def pp_within_layers(x: Shape) -> Violation | None:
    if x.grid.pp <= x.model.num_layers:
        return None
    return Violation("divisibility", f"pp = {x.grid.pp} exceeds the {x.model.num_layers} layers",
                     "degrees.pp")


def prefill_keeps_up(x: Shape) -> Violation | None:
    """The token budget must let prefill keep up with the decode rate: with ``s`` sequences
    decoding per rank and microbatch, ρ(s) = s·input/(output·(N − s)) < 1 (else the prefill queue
    grows without bound and TTFT with it)."""
    g, wl = x.grid, x.workload
    per_rank = -(-x.batch // g.dp)
    s = -(-per_rank // g.pp)
    limit = timing.max_stable_s(wl.input_len, wl.output_len, x.engine.token_budget)
    if s <= limit:
        return None
    return Violation("capacity", f"{s} sequences per rank and microbatch leave the token budget "
                     f"of {x.engine.token_budget} unable to prefill {wl.input_len}-token prompts "
                     f"as fast as {wl.output_len}-token answers finish (at most {limit}: "
                     "raise engine.max_num_batched_tokens, dp or pp, or lower the batch)",
                     "batch")


# -- what the engines can run (search.engine_rules) ---------------------------------------------
# The export (solver/export) targets these engine versions; each rule below is what the engine's
# own code refuses or cannot express, with the source in its message. An instance with
# search.engine_rules: false is judged without them (the engine-agnostic plan space).

#: The engine versions the rules describe (solver/export/data holds their parsers' options).
ENGINE_VERSIONS = {"vllm": "vLLM 0.11.0", "sglang": "SGLang 0.5.3",
                   "trtllm": "TensorRT-LLM main@00209af1"}
#: The dispatch precision of each engine's expert-parallel all-to-all.
NATIVE_DISPATCH = {"vllm": "bf16", "sglang": "fp8", "trtllm": "fp8"}


def engine_of(x: Shape) -> str | None:
    """The engine whose rules judge ``x``; None when the instance opts out."""
    return x.engine.name if x.search.engine_rules else None


def engine_context_parallel(x: Shape) -> Violation | None:
    """No engine runs moeplan's cp (the sequence split over GPUs in prefill and decode)."""
    e, cp = engine_of(x), x.grid.cp
    if e is None or cp == 1:
        return None
    return Violation("engine", f"cp = {cp}: {ENGINE_VERSIONS[e]} has no context parallelism "
                     "for both prefill and decode (moeplan's cp); search.engine_rules: false "
                     "plans without the engine's rules", "degrees.cp")


def engine_expert_data_parallel(x: Shape) -> Violation | None:
    """The engines' expert groups always cover every GPU of a stage: edp = 1."""
    e, g = engine_of(x), x.grid
    if e is None or g.edp == 1 or not x.model.moe_layers:  # no expert groups in a dense model
        return None
    return Violation("engine", f"edp = {g.edp}: {ENGINE_VERSIONS[e]}'s expert groups always "
                     f"cover every GPU of a stage (etp·ep = tp·dp = {g.tp * g.dp})",
                     "degrees.edp")


def vllm_expert_parallel_stage(x: Shape) -> Violation | None:
    """vLLM --enable-expert-parallel puts one expert group of ep = tp·dp on a stage, etp = 1."""
    g = x.grid
    if engine_of(x) != "vllm" or not x.model.moe_layers or g.ep == 1:
        return None
    stage = g.tp * g.dp
    if (g.ep, g.etp) == (stage, 1):
        return None
    return Violation("engine", f"ep = {g.ep}, etp = {g.etp}: vLLM 0.11.0 "
                     "--enable-expert-parallel puts one expert group of ep = tp·dp = "
                     f"{stage} on a stage (etp = 1)", "degrees.ep")


def vllm_expert_tensor_stage(x: Shape) -> Violation | None:
    """vLLM without expert parallelism shards every expert over the stage's tp·dp GPUs."""
    g = x.grid
    if engine_of(x) != "vllm" or not x.model.moe_layers or g.ep > 1:
        return None
    stage = g.tp * g.dp
    if g.etp == stage:
        return None
    return Violation("engine", f"etp = {g.etp}: vLLM 0.11.0 without expert parallelism shards "
                     f"every expert over tp·dp = {stage} GPUs", "degrees.etp")


def engine_dispatch_precision(x: Shape) -> Violation | None:
    """Expert-parallel dispatch moves tokens in the precision the engine's all-to-all uses."""
    e = engine_of(x)
    if e is None or x.grid.ep == 1 or not x.model.moe_layers:
        return None
    have, native = x.engine.dispatch_precision, NATIVE_DISPATCH[e]
    if have == native:
        return None
    how = {"vllm": "its all2all backend allgather_reducescatter moves BF16",
           "sglang": "its DeepEP backend dispatches FP8",
           "trtllm": "its wide-EP all-to-all quantises dispatch to FP8"}[e]
    return Violation("engine", f"ep = {x.grid.ep} with expert-parallel dispatch in {have}: "
                     f"{ENGINE_VERSIONS[e]}: {how} (set engine.ep_dispatch_precision: "
                     f"{native})", "engine.ep_dispatch_precision")


def trtllm_attention_dp(x: Shape) -> Violation | None:
    """TensorRT-LLM's attention DP (enable_attention_dp) runs attention with TP 1 on every
    rank: dp > 1 needs tp = 1."""
    g = x.grid
    if engine_of(x) != "trtllm" or g.dp == 1 or g.tp == 1:
        return None
    return Violation("engine", f"tp = {g.tp} with dp = {g.dp}: TensorRT-LLM's attention DP runs "
                     "attention with TP 1 on every rank (enable_attention_dp)", "degrees.tp")


def trtllm_two_batch_overlap(x: Shape) -> Violation | None:
    """trtllm-serve has no option for two-batch overlap."""
    if engine_of(x) != "trtllm" or x.engine.overlap != "two_batch":
        return None
    return Violation("engine", "two-batch overlap: trtllm-serve has no option for it (set "
                     "engine.overlap: none)", "engine.overlap")


def vllm_dp_ranks_within_nodes(x: Shape) -> Violation | None:
    """Multi-node data parallelism in vLLM starts whole data-parallel ranks (tp·pp GPUs) on each
    node (--data-parallel-size-local)."""
    g = x.grid
    if engine_of(x) != "vllm" or g.dp == 1:
        return None
    nodes, per_node = node_layout(g.tp * g.cp * g.dp * g.pp, x.hw.gpus_per_node, g.tp * g.cp)
    if nodes == 1 or per_node % (g.tp * g.pp) == 0:
        return None
    return Violation("engine", f"a data-parallel rank of tp·pp = {g.tp * g.pp} GPUs would span "
                     f"nodes of {per_node} GPUs: vLLM 0.11.0 multi-node data parallelism needs "
                     "whole ranks per node (--data-parallel-size-local)", "degrees")


def sglang_decode_pipeline(x: Shape) -> Violation | None:
    """SGLang runs its pipeline-parallel loop only without disaggregation or for prefill."""
    if engine_of(x) != "sglang" or x.pool != "decode" or x.grid.pp == 1:
        return None
    return Violation("engine", f"pp = {x.grid.pp}: SGLang 0.5.3 has no pipeline-parallel decode "
                     "loop in disaggregated mode (managers/scheduler.py runs event_loop_pp only "
                     "without disaggregation or for prefill)", "degrees.pp")


def vllm_disagg_pipeline(x: Shape) -> Violation | None:
    """vLLM's NixlConnector pairs ranks by TP rank only: no pipeline stages in either pool."""
    if engine_of(x) != "vllm" or not x.pool or x.grid.pp == 1:
        return None
    return Violation("engine", f"pp = {x.grid.pp}: vLLM 0.11.0's NixlConnector pairs ranks by "
                     "TP rank only (the handshake listens on port VLLM_NIXL_SIDE_CHANNEL_PORT + "
                     "dp_rank·tp + tp_rank, no pipeline stage; nixl_connector.py)", "degrees.pp")


def vllm_prefill_tp_within_node(x: Shape) -> Violation | None:
    """The decode instances reach every TP rank of a vLLM prefill rank at one host."""
    g = x.grid
    if engine_of(x) != "vllm" or x.pool != "prefill":
        return None
    _, per_node = node_layout(g.tp * g.cp * g.dp * g.pp, x.hw.gpus_per_node, g.tp * g.cp)
    if per_node % g.tp == 0:
        return None
    return Violation("engine", f"a prefill TP group of {g.tp} GPUs would span nodes: vLLM "
                     "0.11.0's decode instances reach every TP rank of a prefill rank at one "
                     "host (VLLM_NIXL_SIDE_CHANNEL_HOST; nixl_connector.py)", "degrees.tp")


#: The engine rules, in the order verify reports them.
ENGINE_RULES: tuple[Rule, ...] = (
    engine_context_parallel,
    engine_expert_data_parallel,
    vllm_expert_parallel_stage,
    vllm_expert_tensor_stage,
    engine_dispatch_precision,
    trtllm_attention_dp,
    trtllm_two_batch_overlap,
    vllm_dp_ranks_within_nodes,
    sglang_decode_pipeline,
    vllm_disagg_pipeline,
    vllm_prefill_tp_within_node,
)

#: Rules that depend on the pipeline degree or the instance's GPUs, not only on a stage's
#: degrees: the plan space checks them again once pp is chosen (they pass at pp = 1 whenever
#: they pass at any pp).
PP_RULES: tuple[Rule, ...] = (
    pp_within_layers,
    vllm_dp_ranks_within_nodes,
    sglang_decode_pipeline,
    vllm_disagg_pipeline,
    vllm_prefill_tp_within_node,
)


# -- the two pools of a disaggregated plan, together ---------------------------------------------

PairRule = Callable[[str, Grid, Grid], "Violation | None"]


def sglang_stage_sizes_nest(engine: str, prefill: Grid, decode: Grid) -> Violation | None:
    """SGLang transfers KV between TP sizes (tp·dp, its --tp-size) only when one is a
    multiple of the other."""
    if engine != "sglang":
        return None
    sp, sd = prefill.tp * prefill.dp, decode.tp * decode.dp
    if max(sp, sd) % min(sp, sd) == 0:
        return None
    return Violation("engine", f"a prefill stage of tp·dp = {sp} GPUs and a decode stage of "
                     f"{sd}: SGLang 0.5.3 transfers KV between TP sizes only when one is a "
                     "multiple of the other (server_args.py, validate_disagg_tp_size)",
                     "decode.degrees.tp")


def vllm_decode_tp_multiple(engine: str, prefill: Grid, decode: Grid) -> Violation | None:
    """vLLM's NixlConnector needs the decode TP to be a multiple of the prefill TP."""
    if engine != "vllm" or decode.tp % prefill.tp == 0:
        return None
    return Violation("engine", f"decode tp = {decode.tp} with prefill tp = {prefill.tp}: vLLM "
                     "0.11.0's NixlConnector needs the decode TP to be a multiple of the prefill "
                     "TP (nixl_connector.py, add_remote_agent: 'Decode TP cannot be smaller than "
                     "prefill TP')", "decode.degrees.tp")


#: The rules on the pair of pools of a two-pool plan.
PAIR_RULES: tuple[PairRule, ...] = (sglang_stage_sizes_nest, vllm_decode_tp_multiple)


def pair_violations(engine: str, prefill: Grid, decode: Grid) -> list[Violation]:
    """Every pair rule the two pools' grids break under ``engine``."""
    return [v for v in (r(engine, prefill, decode) for r in PAIR_RULES) if v is not None]


#: Every structural rule, in the order verify reports them.
RULES: tuple[Rule, ...] = (
    expert_grid_identity,
    tp_divides_heads,
    tp_fits_kv_heads,
    tp_divides_dense_width,
    tp_divides_shared_width,
    no_moe_no_expert_degrees,
    redundant_needs_ep,
    ep_divides_slots,
    slots_fit_distinct_experts,
    etp_divides_expert_width,
    moe_group_nests_tp,
    whole_quantisation_blocks,
    dp_divides_batch,
    pp_within_layers,
    tp_within_node,
    etp_within_node,
    ep_within_node,
    prefill_keeps_up,
    *ENGINE_RULES,
)

#: Rules that depend only on the degrees (not on the batch): the plan space filters grids by them.
GRID_RULES: tuple[Rule, ...] = tuple(r for r in RULES
                                     if r not in (dp_divides_batch, prefill_keeps_up))


def violations(x: Shape, rules: tuple[Rule, ...] = RULES) -> list[Violation]:
    """Every rule of ``rules`` that ``x`` breaks."""
    out = []
    for rule in rules:
        v = rule(x)
        if v is not None:
            out.append(v)
    return out
