"""Launch commands of a plan for vLLM, SGLang and TensorRT-LLM.

Each builder maps moeplan's degrees (docs/cost-model.md, "What a plan is") onto the engine's own
parallel options, sets every engine setting the cost model prices (memory fraction, tokens per
scheduler step, overlap scheduling, dispatch precision, two-batch overlap) explicitly, and hands
the engine the plan's expert placement where the engine can take one. What an engine cannot
express is refused with an :class:`ExportError` naming the rule, never emitted. docs/export.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from solver import rules
from solver.estimate import Evaluation, evaluate
from solver.export.flags import check_command, engine_flags
from solver.export.models import served_model_path
from solver.export.placement_files import sglang_expert_location, trtllm_load_balancer
from solver.instance import InputError
from solver.schema import Grid, Instance, Plan

#: Placeholder for the address of an instance's node 0, in every command.
HEAD = "${HEAD_ADDR}"
VLLM_DP_RPC_PORT = 13345
SGLANG_DIST_PORT = 5000
RAY_PORT = 6379


class ExportError(InputError):
    """The engine cannot run the plan as costed (bad input for this engine, one line)."""

    def __init__(self, engine: str, message: str, field: str = "engine"):
        super().__init__(f"{field}: {engine} cannot run this plan: {message}", field)


@dataclass
class Launch:
    replica: int
    node: int
    gpus: int
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Built:
    """What a builder returns: the launches of replica 0 (the others are identical), files,
    the placement statement, the settings table and caveats."""

    launches: list[Launch]
    files: dict[str, str]
    placement: str
    settings: dict[str, str]
    caveats: list[str]


@dataclass
class PoolSettings:
    """What one pool of a disaggregated deployment adds to the aggregated builder
    (:mod:`solver.export.disagg`): its options, its settings rows and caveats, and the figures
    the aggregated builder would otherwise take from the aggregated cost model."""

    name: str  # "prefill" | "decode"
    args: list[str] = field(default_factory=list)  # engine options on every node's command
    options: dict = field(default_factory=dict)  # TensorRT-LLM YAML options set or replaced
    settings: dict[str, str] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    eplb_caveat: str | None = None  # vLLM: its EPLB's placement, priced for the pair
    kv_fraction: float | None = None  # TensorRT-LLM: free_gpu_memory_fraction of the pool
    port: int | None = None  # the serving port (default: the aggregated one)


@dataclass(frozen=True)
class Layout:
    """How one instance sits on nodes: ``nodes`` nodes of ``per_node`` GPUs each, consecutive
    ranks per node (pipeline stage after stage, attention-DP ranks inside a stage)."""

    nodes: int
    per_node: int


def layout(instance: Instance, plan: Plan) -> Layout:
    """The fewest nodes with equal GPU counts that keep every TP group inside a node: the largest
    divisor of the instance's GPUs that fits a node and is a multiple of ``tp·cp``
    (:func:`solver.rules.node_layout`, which the engine rules judge too)."""
    d = plan.degrees
    nodes, per_node = rules.node_layout(d.gpus_per_instance, instance.hardware.gpus_per_node,
                                        d.tp * d.cp)
    return Layout(nodes, per_node)


def engine_shape(engine: str, instance: Instance, plan: Plan, pool: str = "") -> rules.Shape:
    """The plan as the engine rules judge it: under ``engine``, with the rules on whatever the
    instance's ``search.engine_rules`` (an export always needs a plan the engine can run)."""
    d = plan.degrees
    eng = instance.engine
    if eng.name != engine:
        eng = eng.model_copy(update={"name": engine})
    return rules.Shape(
        model=instance.model, hw=instance.hardware,
        search=instance.search.model_copy(update={"engine_rules": True}), engine=eng,
        workload=instance.workload, grid=Grid(d.tp, d.cp, d.dp, d.ep, d.etp, d.edp, d.pp),
        batch=plan.batch, redundant=_redundant(instance, plan), pool=pool)


def check_engine(engine: str, instance: Instance, plan: Plan, pool: str = "") -> None:
    """Refuse, naming the rule, a plan the engine cannot express (before anything is built):
    the first of :data:`solver.rules.ENGINE_RULES` it breaks (``pool``: the pool of a two-pool
    plan, whose rules apply too)."""
    for v in rules.violations(engine_shape(engine, instance, plan, pool), rules.ENGINE_RULES):
        raise ExportError(engine, v.message, v.field)


def refuse_invalid(engine: str, planned_for: str, report) -> None:
    """Refuse a plan verify rejects (a one- or two-pool report), naming its first broken rule;
    when the plan was made for another engine, say that this engine's settings break it."""
    if report.valid:
        return
    first = report.violations[0]
    if engine != planned_for:
        raise ExportError(engine, f"the plan was made for {planned_for}; under {engine}'s "
                          f"settings it breaks {first} (plan with engine: {{name: {engine}}})",
                          "plan")
    raise InputError(f"plan: the plan breaks {len(report.violations)} rule(s), e.g. "
                     f"{first}; export only a plan verify accepts", "plan")


def _kv_dtype(instance: Instance, names: dict[str, str], engine: str) -> str:
    kv = instance.model.kv_precision
    if kv not in names:
        raise ExportError(engine, f"a {kv} KV cache (it stores {', '.join(names)})",
                          "model.kv_precision")
    return names[kv]


def _redundant(instance: Instance, plan: Plan) -> int:
    if plan.degrees.ep == 1:
        return 0
    if plan.redundant_experts is not None:
        return plan.redundant_experts
    return instance.search.redundant_experts


def _eplb_caveat(instance: Instance, plan: Plan, ev: Evaluation, engine: str) -> str:
    """What the engine's own balancer gives, priced by the cost model: the EPLB greedy of the
    plan's slots (what moeplan costs for a plan without a placement)."""
    own = evaluate(instance, plan.model_copy(update={"placement": None}))
    m, e = ev.metrics, own.metrics
    return (f"{engine} cannot load an initial expert placement: it starts with contiguous "
            f"experts and its EPLB rearranges them from measured load; moeplan prices EPLB's "
            f"placement (DeepSeek's greedy) at TPOT {e.tpot_s * 1e3:.2f} ms, TTFT "
            f"{e.ttft_s:.3f} s, {e.output_tokens_per_s_per_gpu:.1f} tokens/s per GPU (the "
            f"plan's placement: {m.tpot_s * 1e3:.2f} ms, {m.ttft_s:.3f} s, "
            f"{m.output_tokens_per_s_per_gpu:.1f})")


# ----------------------------------------------------------------------------------------------
# vLLM 0.11.0
# ----------------------------------------------------------------------------------------------


def build_vllm(instance: Instance, plan: Plan, ev: Evaluation | None, model_path: str,
               pool: PoolSettings | None = None) -> Built:
    engine = "vllm"
    d, eng = plan.degrees, instance.engine
    check_engine(engine, instance, plan, pool.name if pool else "")
    lay = layout(instance, plan)
    q = -(-plan.batch // d.dp)
    red = _redundant(instance, plan)
    args = [model_path, "--tensor-parallel-size", str(d.tp),
            "--pipeline-parallel-size", str(d.pp)]
    settings = {
        "gpu_memory_utilization": f"--gpu-memory-utilization {eng.memory_fraction:g}",
        "max_num_batched_tokens": f"--max-num-batched-tokens {eng.token_budget}",
        "batch": f"--max-num-seqs {q} (per data-parallel rank)",
    }
    caveats: list[str] = []
    if d.dp > 1:
        args += ["--data-parallel-size", str(d.dp)]
    if d.ep > 1:
        args += ["--enable-expert-parallel", "--enable-eplb",
                 "--eplb-config", json.dumps({"num_redundant_experts": red})]
        settings["redundant_experts"] = f"--eplb-config {{\"num_redundant_experts\": {red}}}"
        settings["ep_dispatch_precision"] = "VLLM_ALL2ALL_BACKEND=allgather_reducescatter (BF16)"
        if pool is None:
            caveats.append(_eplb_caveat(instance, plan, ev, engine))
        elif pool.eplb_caveat:
            caveats.append(pool.eplb_caveat)
    args += ["--max-num-seqs", str(q), "--max-model-len", str(instance.workload.max_context),
             "--max-num-batched-tokens", str(eng.token_budget), "--enable-chunked-prefill",
             "--gpu-memory-utilization", f"{eng.memory_fraction:g}",
             "--kv-cache-dtype", _kv_dtype(instance, {"bf16": "bfloat16", "fp8": "fp8"}, engine)]
    if d.pp == 1:
        args.append("--async-scheduling")
        settings["step_overhead_us"] = "--async-scheduling (host time hidden: 0 µs)"
    else:
        settings["step_overhead_us"] = "pipeline micro-batches (async scheduling needs pp = 1)"
        caveats.append(f"vLLM 0.11.0 refuses --async-scheduling with pipeline-parallel-size > 1 "
                       f"(engine/arg_utils.py); the plan is costed with a step overhead of "
                       f"{eng.overhead_us:g} µs, which relies on the {d.pp} pipeline "
                       "micro-batches hiding the host time")
    if eng.overlap == "two_batch":
        args.append("--enable-dbo")
        settings["overlap"] = "--enable-dbo"
    port = str(pool.port if pool and pool.port else 8000)
    if pool is not None:
        args += pool.args
        settings.update(pool.settings)
        caveats += pool.caveats
    env = {"VLLM_ALL2ALL_BACKEND": "allgather_reducescatter"} if d.ep > 1 else {}
    launches = []
    if lay.nodes == 1:
        launches.append(Launch(0, 0, lay.per_node, ["vllm", "serve", *args, "--port", port],
                               dict(env)))
    elif d.dp > 1:
        local = lay.per_node // (d.tp * d.pp)
        for node in range(lay.nodes):
            dp_args = ["--data-parallel-size-local", str(local), "--data-parallel-address", HEAD,
                       "--data-parallel-rpc-port", str(VLLM_DP_RPC_PORT)]
            if node == 0:
                cmd = ["vllm", "serve", *args, *dp_args, "--port", port]
            else:
                cmd = ["vllm", "serve", *args, *dp_args, "--headless",
                       "--data-parallel-start-rank", str(node * local)]
            launches.append(Launch(0, node, lay.per_node, cmd, dict(env)))
    else:  # one TP x PP group across nodes: Ray, as vLLM's multi-node guide runs it
        for node in range(lay.nodes):
            if node == 0:
                cmd = ["sh", "-c", f"ray start --head --port={RAY_PORT} && vllm serve "
                       + " ".join(_quote(a) for a in args)
                       + f" --distributed-executor-backend ray --port {port}"]
            else:
                cmd = ["ray", "start", f"--address={HEAD}:{RAY_PORT}", "--block"]
            launches.append(Launch(0, node, lay.per_node, cmd, dict(env)))
    for launch in launches:
        vllm_argv = _engine_argv(launch.command, "serve")
        if vllm_argv is not None:
            check_command(engine, vllm_argv, launch.env)
    placement = ("vLLM's own EPLB (it cannot load a placement)" if d.ep > 1
                 else "none (no expert parallelism)")
    return Built(launches, {}, placement, settings, caveats)


def _quote(arg: str) -> str:
    import shlex

    return arg if arg == HEAD or arg.startswith(HEAD) else shlex.quote(arg)


def _engine_argv(command: list[str], marker: str) -> list[str] | None:
    """The engine's own arguments in a launch command (after ``vllm serve``, ``launch_server``
    or ``trtllm-serve``), also inside ``sh -c "..."``; None when the command only starts
    another program (``ray start``)."""
    import shlex

    argv = command
    if command[:2] == ["sh", "-c"]:
        argv = shlex.split(command[2].replace(HEAD, "HEAD_ADDR"))
    for i, a in enumerate(argv):
        if a == marker or a.endswith(marker):
            return argv[i + 1:]
    return None


# ----------------------------------------------------------------------------------------------
# SGLang 0.5.3
# ----------------------------------------------------------------------------------------------


def build_sglang(instance: Instance, plan: Plan, ev: Evaluation | None, model_path: str,
                 pool: PoolSettings | None = None) -> Built:
    engine = "sglang"
    d, eng = plan.degrees, instance.engine
    check_engine(engine, instance, plan, pool.name if pool else "")
    stage = d.tp * d.dp  # SGLang's --tp-size: the GPUs of a stage
    lay = layout(instance, plan)
    red = _redundant(instance, plan)
    args = ["python", "-m", "sglang.launch_server", "--model-path", model_path,
            "--tp-size", str(stage)]
    settings = {
        "gpu_memory_utilization": f"--mem-fraction-static {eng.memory_fraction:g}",
        "max_num_batched_tokens": f"--chunked-prefill-size {eng.token_budget * d.dp} (SGLang "
        "divides it by --dp-size with DP attention)",
        "batch": f"--max-running-requests {plan.batch} (SGLang divides it by --dp-size)",
        "step_overhead_us": "the overlap scheduler (on by default; not disabled)",
    }
    caveats: list[str] = []
    files: dict[str, str] = {}
    if d.dp > 1:
        args += ["--dp-size", str(d.dp), "--enable-dp-attention"]
    if d.pp > 1:
        args += ["--pp-size", str(d.pp)]
        settings["step_overhead_us"] = "pipeline micro-batches"
        caveats.append(f"SGLang 0.5.3 turns its overlap scheduler off with --pp-size > 1 "
                       f"(server_args.py, _handle_pipeline_parallelism); the plan is costed with "
                       f"a step overhead of {eng.overhead_us:g} µs, which relies on the {d.pp} "
                       "pipeline micro-batches hiding the host time")
    placement = "none (no expert parallelism)"
    if d.ep > 1:
        args += ["--ep-size", str(d.ep), "--moe-a2a-backend", "deepep", "--deepep-mode", "auto",
                 "--ep-num-redundant-experts", str(red)]
        settings["ep_dispatch_precision"] = "--moe-a2a-backend deepep (FP8 dispatch, BF16 combine)"
        settings["redundant_experts"] = f"--ep-num-redundant-experts {red}"
        if plan.placement:
            files["expert_location.json"] = sglang_expert_location(instance.model,
                                                                   plan.placement)
            args += ["--init-expert-location", "expert_location.json"]
            placement = ("exact: expert_location.json (--init-expert-location; EPLB off, so it "
                         "stays as planned)")
        else:
            placement = "SGLang's trivial placement (the plan names none)"
        if red:
            args += ["--ep-dispatch-algorithm", "dynamic"]
            settings["replica split"] = ("--ep-dispatch-algorithm dynamic (a token picks one of "
                                         "an expert's replicas uniformly: an even split)")
    args += ["--mem-fraction-static", f"{eng.memory_fraction:g}",
             "--chunked-prefill-size", str(eng.token_budget * d.dp),
             "--max-prefill-tokens", str(eng.token_budget * d.dp),
             "--max-running-requests", str(plan.batch),
             "--context-length", str(instance.workload.max_context),
             "--kv-cache-dtype", _kv_dtype(instance, {"bf16": "auto", "fp8": "fp8_e4m3"}, engine)]
    if eng.overlap == "two_batch":
        args.append("--enable-two-batch-overlap")
        settings["overlap"] = "--enable-two-batch-overlap"
    if pool is not None:
        args += pool.args
        settings.update(pool.settings)
        caveats += pool.caveats
    port = str(pool.port if pool and pool.port else 30000)
    launches = []
    for node in range(lay.nodes):
        cmd = list(args)
        if lay.nodes > 1:
            cmd += ["--nnodes", str(lay.nodes), "--node-rank", str(node),
                    "--dist-init-addr", f"{HEAD}:{SGLANG_DIST_PORT}"]
        cmd += ["--host", "0.0.0.0", "--port", port]
        check_command(engine, cmd[3:])
        launches.append(Launch(0, node, lay.per_node, cmd))
    return Built(launches, files, placement, settings, caveats)


# ----------------------------------------------------------------------------------------------
# TensorRT-LLM (trtllm-serve, main@00209af1)
# ----------------------------------------------------------------------------------------------


def trtllm_kv_fraction(instance: Instance, ev: Evaluation) -> float:
    """TensorRT-LLM's ``free_gpu_memory_fraction`` is the share of the memory left *after* the
    weights and buffers that the KV cache takes, not a share of HBM: the value that gives the KV
    cache the bytes moeplan's budget leaves it on the fullest GPU."""
    from solver.contract import estimate_document

    mem = estimate_document(instance, ev).memory
    other = sum(v for k, v in mem.terms_gb.items() if k != "kv_cache")
    free = mem.capacity_gb - other
    kv_room = mem.budget_gb - other
    return max(0.01, min(1.0, round(kv_room / free, 4)))


def build_trtllm(instance: Instance, plan: Plan, ev: Evaluation | None, model_path: str,
                 pool: PoolSettings | None = None) -> Built:
    import yaml

    engine = "trtllm"
    d, eng = plan.degrees, instance.engine
    check_engine(engine, instance, plan, pool.name if pool else "")
    lay = layout(instance, plan)
    red = _redundant(instance, plan)
    stage = d.tp * d.dp
    q = -(-plan.batch // d.dp)
    kv_fraction = (pool.kv_fraction if pool is not None and pool.kv_fraction is not None
                   else trtllm_kv_fraction(instance, ev))
    options: dict = {
        "enable_attention_dp": d.dp > 1,
        "enable_chunked_prefill": True,
        "disable_overlap_scheduler": False,
        "max_batch_size": q,
        "max_num_tokens": eng.token_budget,
        "max_seq_len": instance.workload.max_context,
        "kv_cache_config": {"free_gpu_memory_fraction": kv_fraction,
                            "dtype": _kv_dtype(instance, {"bf16": "auto", "fp8": "fp8"},
                                               engine)},
        "scheduler_config": {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT"},
    }
    files: dict[str, str] = {}
    placement = "none (no expert parallelism)"
    settings = {
        "gpu_memory_utilization": f"kv_cache_config.free_gpu_memory_fraction {kv_fraction:g} "
        f"(the share of memory after weights and buffers that gives the KV cache what "
        f"{eng.memory_fraction:g} of HBM leaves it)",
        "max_num_batched_tokens": f"max_num_tokens {eng.token_budget}",
        "batch": f"max_batch_size {q} (per attention-DP rank)",
        "step_overhead_us": "disable_overlap_scheduler: false (the overlap scheduler)",
        "kv_reserves_full_sequence": "scheduler_config.capacity_scheduler_policy "
        "GUARANTEED_NO_EVICT",
    }
    if d.ep > 1:
        moe: dict = {"backend": "WIDEEP"}
        settings["ep_dispatch_precision"] = "moe_config.backend WIDEEP (FP8 dispatch on Hopper)"
        if plan.placement:
            files["moe_load_balancer.yaml"] = trtllm_load_balancer(plan.placement)
            moe["load_balancer"] = "moe_load_balancer.yaml"
            placement = ("exact: moe_load_balancer.yaml (initial_global_assignments, "
                         "layer_updates_per_iter 0: it stays as planned)")
            settings["redundant_experts"] = (f"moe_load_balancer.yaml num_slots "
                                             f"{instance.model.num_experts + red}")
        options["moe_config"] = moe
    caveats: list[str] = []
    if pool is not None:
        options.update(pool.options)
        settings.update(pool.settings)
        caveats += pool.caveats
    port = str(pool.port if pool and pool.port else 8000)
    files["extra_llm_api_options.yaml"] = yaml.safe_dump(options, sort_keys=False)
    _check_trtllm_options(options)
    serve = ["trtllm-serve", model_path, "--backend", "pytorch", "--tp_size", str(stage),
             "--pp_size", str(d.pp)]
    if d.ep > 1 or d.etp > 1:
        serve += ["--ep_size", str(d.ep)]
    serve += ["--gpus_per_node", str(lay.per_node), "--max_batch_size", str(q),
              "--max_num_tokens", str(eng.token_budget),
              "--max_seq_len", str(instance.workload.max_context),
              "--kv_cache_free_gpu_memory_fraction", f"{kv_fraction:g}",
              "--config", "extra_llm_api_options.yaml", "--host", "0.0.0.0", "--port", port]
    check_command(engine, serve[2:])
    if lay.nodes == 1:
        cmd = serve
    else:  # one MPI job over the instance's nodes, started from node 0
        hosts = ",".join(f"{HEAD if n == 0 else '${NODE' + str(n) + '_ADDR}'}:{lay.per_node}"
                         for n in range(lay.nodes))
        cmd = ["mpirun", "-H", hosts, "-n", str(d.gpus_per_instance),
               "trtllm-llmapi-launch", *serve]
    launches = [Launch(0, 0, lay.per_node, cmd)]
    if lay.nodes > 1:
        caveats.append(f"the instance spans {lay.nodes} nodes: one mpirun on node 0 starts "
                       "every rank (set NODE1_ADDR... to the other nodes)")
    return Built(launches, files, placement, settings, caveats)


def _check_trtllm_options(options: dict) -> None:
    known = engine_flags("trtllm")
    keys = known.config_keys
    for key, value in options.items():
        if key not in keys[""]:
            raise ValueError(f"trtllm: extra_llm_api_options has no key {key}")
        if isinstance(value, dict):
            unknown = set(value) - set(keys.get(key, ()))
            if unknown:
                raise ValueError(f"trtllm: {key} has no key {', '.join(sorted(unknown))}")
            for sub, v in value.items():
                choices = known.values.get(f"{key}.{sub}")
                if choices is not None and v not in choices:
                    raise ValueError(f"trtllm: {key}.{sub} {v} is not one of "
                                     f"{', '.join(choices)}")


BUILDERS = {"vllm": build_vllm, "sglang": build_sglang, "trtllm": build_trtllm}


def build(instance: Instance, plan: Plan, engine: str, model_path: str | None = None
          ) -> tuple[Built, Layout, str]:
    if engine not in BUILDERS:
        raise InputError(f"engine: '{engine}' is not one of {', '.join(BUILDERS)}", "engine")
    ev = evaluate(instance, plan)
    path = model_path or served_model_path(instance.model)
    return BUILDERS[engine](instance, plan, ev, path), layout(instance, plan), path
