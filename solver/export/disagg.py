"""Launch commands of a two-pool (disaggregated) plan for SGLang, vLLM and TensorRT-LLM.

Each pool is exported by the aggregated builders of :mod:`solver.export.engines` (its own
degrees, replicas, memory fraction, batch and token budget, expert placement files), with the
options that make it a prefill or a decode instance added; then come the pieces that connect the
pools: the KV transfer settings and the front that sends each request to a prefill instance and
then to a decode instance (SGLang's router, ``trtllm-serve disaggregated``; vLLM ships example
proxies only). The plan must pass :func:`solver.disagg.verify`; what an engine cannot run is
refused with an :class:`~solver.export.engines.ExportError` naming the pool and the rule; where
the engine does not do what the cost model assumed (the KV transfer overlapping the prefill,
the prefill servers' overlap scheduler), the plan is re-priced and the difference is a caveat.
docs/export.md, "Disaggregated plans".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from solver import disagg, rules
from solver.contract import DisaggExportOut, LaunchOut, PoolExportOut
from solver.costmodel import BYTES_PER_GB
from solver.estimate import batch_position
from solver.export.engines import (
    BUILDERS,
    HEAD,
    Built,
    ExportError,
    Layout,
    PoolSettings,
    _redundant,
    check_engine,
    layout,
    refuse_invalid,
)
from solver.export.flags import check_command, check_section_command, engine_flags
from solver.export.models import served_model_path
from solver.instance import InputError
from solver.schema import DisaggPlan, Grid, Instance, Plan

#: The front's port, SGLang's prefill bootstrap port (its default) and the servers' ports.
ROUTER_PORT = 8000
SGLANG_BOOTSTRAP_PORT = 8998
SERVER_PORTS = {"sglang": {"prefill": 30000, "decode": 30000},
                "vllm": {"prefill": 8000, "decode": 8000},
                "trtllm": {"prefill": 8001, "decode": 8002}}
#: The KV transfer backends each engine can be started with (the first is the default).
KV_BACKENDS = {"sglang": ("mooncake", "nixl"), "vllm": ("nixl",), "trtllm": ("ucx", "nixl")}
POOLS = ("prefill", "decode")


def pool_addr(pool: str, replica: int) -> str:
    """Placeholder for the address of node 0 of one instance of a pool (the front's scripts)."""
    return f"${{{pool.upper()}{replica}_ADDR}}"


def node_addr(node: int) -> str:
    """Placeholder for the address of node ``node`` of the instance a script starts."""
    return HEAD if node == 0 else f"${{NODE{node}_ADDR}}"


@dataclass
class _Pair:
    """What the connecting pieces of one engine add: each pool's settings, the front, its files,
    the connect table and caveats."""

    pools: dict[str, PoolSettings]
    router: list[list[str]]
    files: dict[str, str]
    connect: dict[str, str]
    caveats: list[str]
    #: pool -> environment variable set to the address of the node a command runs on
    node_addr_env: dict[str, str] = field(default_factory=dict)


def export_disagg(instance: Instance, plan: DisaggPlan, engine: str, *,
                  model_path: str | None = None, kv_backend: str | None = None
                  ) -> DisaggExportOut:
    """The launch commands of a two-pool ``plan`` for ``engine`` (see the module doc)."""
    if engine not in BUILDERS:
        raise InputError(f"engine: '{engine}' is not one of {', '.join(BUILDERS)}", "engine")
    backend = _backend(engine, kv_backend)
    if instance.workload.targets.min_output_tokens_per_s is None:
        raise InputError("workload.targets.min_output_tokens_per_s: required to export a two-pool "
                         "plan (both pools are sized for the request rate it implies)",
                         "workload.targets.min_output_tokens_per_s")
    planned_for = instance.engine.name
    if engine != planned_for:  # judged under this engine's defaults, explicit settings kept
        instance = instance.model_copy(
            update={"engine": instance.engine.model_copy(update={"name": engine})})
    pools = disagg.pool_plans(instance, plan)
    plans = {"prefill": pools.prefill, "decode": pools.decode}
    instances = {"prefill": _prefill_instance(instance, pools.prefill_tokens_per_step),
                 "decode": instance}
    for name in POOLS:  # what the engine cannot express, before the rest
        with _pool_errors(engine, name):
            check_engine(engine, instances[name], plans[name], name)
    lays = {name: layout(instances[name], plans[name]) for name in POOLS}
    _check_pair(engine, plans, lays)
    report = disagg.verify(instance, plan)
    refuse_invalid(engine, planned_for, report)
    ev: disagg.DisaggEvaluation = report.evaluation  # type: ignore[assignment]
    caveats: list[str] = []
    if engine != planned_for:
        m = ev.metrics
        caveats.append(f"the plan was made for {planned_for}; under {engine}'s settings moeplan "
                       f"prices it at TPOT {m.tpot_s * 1e3:.2f} ms, TTFT {m.ttft_s:.3f} s, "
                       f"{m.output_tokens_per_s_per_gpu:.1f} tokens/s per GPU and it still "
                       "meets every target")
    pair = CONNECTORS[engine](instance, plan, plans, lays, ev, backend)
    path = model_path or served_model_path(instance.model)
    out: dict[str, PoolExportOut] = {}
    for name in POOLS:
        with _pool_errors(engine, name):
            built = BUILDERS[engine](instances[name], plans[name], None, path, pair.pools[name])
        var = pair.node_addr_env.get(name)
        for launch in built.launches if var else ():
            launch.env[var] = node_addr(launch.node)
            check_command(engine, [], launch.env)
        out[name] = _pool_out(name, plans[name], instances[name], built, lays[name],
                              pools.prefill_tokens_per_step if name == "prefill" else None)
        caveats += _in_pool(name, built.caveats)
    flags = engine_flags(engine)
    router = [LaunchOut(replica=0, node=0, gpus=0, command=cmd, env={},
                        script="router.sh" if i == 0 else f"router{i}.sh")
              for i, cmd in enumerate(pair.router)]
    return DisaggExportOut(
        engine=engine, engine_version=flags.version,
        flags_source=f"{flags.data_file}: {flags.source_line()}", model_path=path,
        kv_transfer=instance.disaggregation.kv_transfer, kv_backend=backend,
        prefill=out["prefill"], decode=out["decode"], connect=pair.connect, router=router,
        files=pair.files, caveats=caveats + pair.caveats)


def _backend(engine: str, kv_backend: str | None) -> str:
    choices = KV_BACKENDS.get(engine, ())
    if kv_backend is None:
        return choices[0]
    value = kv_backend.strip().lower()
    if value not in choices:
        raise InputError(f"kv_backend: '{kv_backend}' is not a KV transfer backend of {engine} "
                         f"(one of {', '.join(choices)})", "kv_backend")
    return value


def _prefill_instance(instance: Instance, tokens: int) -> Instance:
    """The instance as the prefill pool's engine sees it: its token budget per step and
    attention-DP rank is the plan's ``tokens_per_step``."""
    return instance.model_copy(update={"engine": instance.engine.model_copy(
        update={"max_num_batched_tokens": tokens})})


class _pool_errors:
    """Re-raise an :class:`ExportError` of one pool naming the pool in the field and message."""

    def __init__(self, engine: str, pool: str):
        self.engine, self.pool = engine, pool

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, ExportError):
            rule = str(exc).split("cannot run this plan: ", 1)[-1]
            field = exc.field.removeprefix("plan").lstrip(".")
            if not field or field.startswith("degrees"):  # the pool's plan: name the pool
                field = f"{self.pool}.{field}" if field else self.pool
            raise ExportError(self.engine, f"{self.pool} pool: {rule}", field) from None
        return False


def _check_pair(engine: str, plans: dict[str, Plan], lays: dict[str, Layout]) -> None:
    """What an engine cannot run of the pair beyond each pool's own rules
    (:data:`solver.rules.PAIR_RULES`)."""
    p, d = plans["prefill"].degrees, plans["decode"].degrees
    grid = {name: Grid(g.tp, g.cp, g.dp, g.ep, g.etp, g.edp, g.pp)
            for name, g in (("prefill", p), ("decode", d))}
    for v in rules.pair_violations(engine, grid["prefill"], grid["decode"]):
        raise ExportError(engine, v.message, v.field)


def _pool_out(name: str, plan: Plan, instance: Instance, built: Built, lay: Layout,
              tokens: int | None) -> PoolExportOut:
    d = plan.degrees
    launches = [LaunchOut(replica=r, node=x.node, gpus=x.gpus, command=x.command, env=x.env,
                          script=f"{name}/replica{r}-node{x.node}.sh")
                for r in range(d.replicas) for x in built.launches]
    return PoolExportOut(
        pool=name, degrees=d, batch=plan.batch, tokens_per_step=tokens,
        redundant_experts=_redundant(instance, plan), nodes_per_instance=lay.nodes,
        gpus_per_node=lay.per_node, placement=built.placement, settings=built.settings,
        launches=launches, files=built.files)


def _in_pool(name: str, caveats: list[str]) -> list[str]:
    return [f"{name} pool: {c}" for c in caveats]


# ----------------------------------------------------------------------------------------------
# What the engines do not do that the cost model assumed: re-priced
# ----------------------------------------------------------------------------------------------


def _transfer_caveat(instance: Instance, plan: DisaggPlan, ev: disagg.DisaggEvaluation,
                     how: str) -> str | None:
    """The KV transfer priced as the engine does it (after the prefill) when the plan assumed it
    overlaps the prefill layer by layer."""
    if instance.disaggregation.kv_transfer != "layerwise":
        return None
    after = instance.model_copy(update={"disaggregation": instance.disaggregation.model_copy(
        update={"kv_transfer": "after_prefill"})})
    report = disagg.verify(after, plan)
    m, mine = report.evaluation.metrics, ev.metrics
    text = (f"{how}, not layer by layer as the plan assumed (disaggregation.kv_transfer: "
            f"layerwise); with the whole transfer after the prefill moeplan prices TTFT at "
            f"{m.ttft_s:.3f} s ({m.kv_transfer_s * 1e3:.3f} ms of KV transfer exposed; the plan: "
            f"{mine.ttft_s:.3f} s, {mine.kv_transfer_s * 1e3:.3f} ms)")
    if report.valid:
        return text + " and it still meets every target"
    return (text + f"; it then breaks {report.violations[0]}: plan with "
            "disaggregation.kv_transfer: after_prefill")


def _eplb_caveat(instance: Instance, plan: DisaggPlan, ev: disagg.DisaggEvaluation,
                 plans: dict[str, Plan]) -> str | None:
    """vLLM cannot load a placement: the pair priced with EPLB's in every pool with EP."""
    moe = [name for name in POOLS if plans[name].degrees.ep > 1]
    if not moe:
        return None
    own = disagg.evaluate(instance, plan.model_copy(update={
        name: getattr(plan, name).model_copy(update={"placement": None}) for name in moe}))
    e, m = own.metrics, ev.metrics
    return (f"vllm cannot load an initial expert placement ({' and '.join(moe)} pool): it starts "
            "with contiguous experts and its EPLB rearranges them from measured load; moeplan "
            f"prices EPLB's placement (DeepSeek's greedy) at TPOT {e.tpot_s * 1e3:.2f} ms, TTFT "
            f"{e.ttft_s:.3f} s, prefill utilisation {e.prefill_utilization:.3f} (the plan's "
            f"placement: {m.tpot_s * 1e3:.2f} ms, {m.ttft_s:.3f} s, "
            f"{m.prefill_utilization:.3f})")


def _trtllm_kv_fraction(name: str, instance: Instance, ev: disagg.DisaggEvaluation) -> float:
    """TensorRT-LLM's ``free_gpu_memory_fraction`` of one pool: the share of what weights and
    buffers leave on the fullest GPU that gives the KV cache the bytes the pool's budget leaves
    it (as :func:`solver.export.engines.trtllm_kv_fraction` for an aggregated plan)."""
    budget = ev.breakdown[name]["memory_budget_gb"] * BYTES_PER_GB
    hbm = instance.hardware.hbm_gb * BYTES_PER_GB
    layers = instance.model.num_layers
    if name == "prefill":
        pf = ev.prefill
        mem = pf.result.stage_mem_bytes
        s = max(range(len(mem)), key=lambda i: mem[i])
        st = pf.stages[s]
        kv = int(pf.cost.kv_bytes(0)[st.first_layer:min(st.last_layer, layers - 1) + 1].sum())
    else:
        dc = ev.decode
        mem = dc.result.stage_mem_bytes
        s = max(range(len(mem)), key=lambda i: mem[i])
        st = dc.stages[s]
        q, _ = batch_position(dc.grid, dc.batch)
        costs = dc.costs[st.first_layer:min(st.last_layer, layers - 1) + 1]
        kv = max(q * sum(c.kv_seq_bytes for c in costs), sum(c.kv_max_bytes for c in costs))
    other = mem[s] - kv
    return max(0.01, min(1.0, round((budget - other) / (hbm - other), 4)))


# ----------------------------------------------------------------------------------------------
# SGLang 0.5.3 + sglang-router
# ----------------------------------------------------------------------------------------------


def _sglang(instance: Instance, plan: DisaggPlan, plans: dict[str, Plan],
            lays: dict[str, Layout], ev: disagg.DisaggEvaluation, backend: str) -> _Pair:
    p, d = plans["prefill"].degrees, plans["decode"].degrees
    port = SERVER_PORTS["sglang"]
    prefill = PoolSettings("prefill", port=port["prefill"], args=[
        "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", backend,
        "--disaggregation-bootstrap-port", str(SGLANG_BOOTSTRAP_PORT),
        "--disaggregation-decode-tp", str(d.tp * d.dp),
        "--disaggregation-decode-dp", str(d.dp), "--load-balance-method", "round_robin"])
    prefill.settings["role"] = "--disaggregation-mode prefill"
    decode = PoolSettings("decode", port=port["decode"], args=[
        "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", backend,
        "--disaggregation-prefill-pp", str(p.pp)])
    decode.settings["role"] = "--disaggregation-mode decode"
    if d.dp > 1:
        decode.args.append("--prefill-round-robin-balance")
    router = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    for r in range(p.replicas):
        router += ["--prefill", f"http://{pool_addr('prefill', r)}:{port['prefill']}",
                   str(SGLANG_BOOTSTRAP_PORT)]
    for r in range(d.replicas):
        router += ["--decode", f"http://{pool_addr('decode', r)}:{port['decode']}"]
    router += ["--policy", "round_robin", "--host", "0.0.0.0", "--port", str(ROUTER_PORT)]
    check_section_command("sglang", "router", router[3:])
    route = engine_flags("sglang").sections["router"]
    connect = {
        "kv_transfer_backend": f"--disaggregation-transfer-backend {backend} on both pools "
        f"({'Mooncake' if backend == 'mooncake' else 'NIXL'} RDMA transfer engine)",
        "kv_transfer_overlap": "chunk by chunk: each prefill step's KV leaves after that step "
        "(disaggregation/prefill.py, send_kv_chunk), the last chunk's after the prefill",
        "bootstrap": f"--disaggregation-bootstrap-port {SGLANG_BOOTSTRAP_PORT} on the prefill "
        f"servers; the router hands it to each request (--prefill URL {SGLANG_BOOTSTRAP_PORT})",
        "pool_shapes": f"--disaggregation-decode-tp {d.tp * d.dp} --disaggregation-decode-dp "
        f"{d.dp} on the prefill servers, --disaggregation-prefill-pp {p.pp} on the decode servers",
        "rdma_devices": "the transfer engine's own detection (--disaggregation-ib-device not "
        "set: device names are the machine's); the cost model sends each GPU's part of a "
        "request's KV over its own inter-node link, so set --disaggregation-ib-device to the "
        "GPU-local NICs where detection does not",
        "routing": f"{route['command']} ({route['version']}) --pd-disaggregation --policy "
        f"round_robin: requests spread evenly over the {p.replicas} prefill and {d.replicas} "
        "decode instance(s), as the cost model's queue assumes",
    }
    if d.dp > 1:
        connect["dp_rank"] = ("--prefill-round-robin-balance on the decode servers and "
                              "--load-balance-method round_robin on the prefill servers: both "
                              "pick a request's DP rank as bootstrap_room % dp (SGLang 0.5.3 "
                              "requires it with a decode --dp-size > 1; server_args.py)")
    caveats = [c for c in (_transfer_caveat(
        instance, plan, ev, "SGLang 0.5.3 sends a prompt's KV chunk by chunk, each after its "
        "prefill step (disaggregation/prefill.py, send_kv_chunk), so the last chunk's KV leaves "
        "after the prefill"),) if c]
    return _Pair({"prefill": prefill, "decode": decode}, [router], {}, connect, caveats)


# ----------------------------------------------------------------------------------------------
# vLLM 0.11.0 (NixlConnector)
# ----------------------------------------------------------------------------------------------


def _vllm(instance: Instance, plan: DisaggPlan, plans: dict[str, Plan],
          lays: dict[str, Layout], ev: disagg.DisaggEvaluation, backend: str) -> _Pair:
    kv = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"},
                    separators=(",", ":"))
    p, d = plans["prefill"].degrees, plans["decode"].degrees
    setting = {"kv_transfer": f"--kv-transfer-config {kv}"}
    pools = {name: PoolSettings(name, port=SERVER_PORTS["vllm"][name],
                                args=["--kv-transfer-config", kv], settings=dict(setting))
             for name in POOLS}
    connect = {
        "kv_transfer_backend": f"--kv-transfer-config {kv} on both pools (NIXL over UCX)",
        "kv_transfer_overlap": "after the prefill: a decode instance reads the prompt's KV "
        "blocks once the prefill request has finished (nixl_connector.py, request_finished)",
        "side_channel": "VLLM_NIXL_SIDE_CHANNEL_HOST = each prefill node's own address: the "
        "decode instances fetch a prefill rank's NIXL metadata there, on ports 5557 + "
        f"dp_rank·{p.tp} + tp_rank (VLLM_NIXL_SIDE_CHANNEL_PORT)",
        "tp_ratio": f"decode tp {d.tp} = {d.tp // p.tp} × prefill tp {p.tp}: each decode TP rank "
        "reads its share of one prefill TP rank's KV",
        "routing": "none in vLLM 0.11.0: a proxy you run sends each request to a prefill "
        "instance, then to a decode instance (see the caveats)",
    }
    proxies = engine_flags("vllm").sections["kv_transfer"]["proxy"].removeprefix(
        "none: vLLM 0.11.0 ships example proxies only ")
    ports = SERVER_PORTS["vllm"]
    caveats = [
        f"vLLM 0.11.0 ships no router for disaggregated serving, only example proxies "
        f"{proxies}: run one in front of the {p.replicas} prefill instance(s) (port "
        f"{ports['prefill']} of each instance's node 0) and the {d.replicas} decode instance(s) "
        f"(port {ports['decode']}); it sends a request to a prefill instance with "
        "max_tokens 1 and kv_transfer_params {do_remote_decode: true}, then to a decode instance "
        "with the kv_transfer_params the prefill returned; its extra round trip is not in the "
        "cost model"]
    caveats += [c for c in (
        _transfer_caveat(instance, plan, ev, "vLLM 0.11.0's NixlConnector moves a prompt's KV "
                         "when the decode instance reads it, after the prefill request finished "
                         "(nixl_connector.py, request_finished)"),
        _eplb_caveat(instance, plan, ev, plans)) if c]
    if instance.model.attention.sliding_layers:
        caveats.append("vLLM 0.11.0 turns its hybrid KV cache manager off with a KV connector "
                       "(config/__init__.py): sliding-window layers keep KV for the whole "
                       "context, more than the cost model's window")
    return _Pair(pools, [], {}, connect, caveats,
                 node_addr_env={"prefill": "VLLM_NIXL_SIDE_CHANNEL_HOST"})


# ----------------------------------------------------------------------------------------------
# TensorRT-LLM (trtllm-serve, main@00209af1)
# ----------------------------------------------------------------------------------------------


def _trtllm(instance: Instance, plan: DisaggPlan, plans: dict[str, Plan],
            lays: dict[str, Layout], ev: disagg.DisaggEvaluation, backend: str) -> _Pair:
    import yaml

    transceiver = {"backend": backend.upper(),
                   "max_tokens_in_buffer": instance.workload.max_input}
    pools = {}
    for name in POOLS:
        pools[name] = PoolSettings(
            name, port=SERVER_PORTS["trtllm"][name],
            options={"cache_transceiver_config": dict(transceiver)},
            kv_fraction=_trtllm_kv_fraction(name, instance, ev),
            settings={"kv_transfer": f"cache_transceiver_config: backend {backend.upper()}, "
                      f"max_tokens_in_buffer {instance.workload.max_input} (the longest prompt)"})
    pools["prefill"].options["disable_overlap_scheduler"] = True
    pools["prefill"].settings["step_overhead_us"] = (
        "disable_overlap_scheduler: true (TensorRT-LLM runs context servers without the overlap "
        "scheduler)")
    p, d = plans["prefill"].degrees, plans["decode"].degrees
    ports = SERVER_PORTS["trtllm"]
    config = {
        "hostname": "0.0.0.0", "port": ROUTER_PORT,
        "context_servers": {"num_instances": p.replicas, "urls": [
            f"{pool_addr('prefill', r)}:{ports['prefill']}" for r in range(p.replicas)]},
        "generation_servers": {"num_instances": d.replicas, "urls": [
            f"{pool_addr('decode', r)}:{ports['decode']}" for r in range(d.replicas)]},
    }
    _check_disagg_config(config)
    router = ["trtllm-serve", "disaggregated", "-c", "disagg_config.yaml"]
    check_section_command("trtllm", "disaggregated", router[2:])
    connect = {
        "kv_transfer_backend": f"cache_transceiver_config.backend {backend.upper()} in both "
        "pools' extra_llm_api_options.yaml",
        "kv_transfer_overlap": "after the prefill: a context server sends a request's KV cache "
        "when its context phase completes",
        "routing": "trtllm-serve disaggregated -c disagg_config.yaml: context_servers and "
        "generation_servers list each instance's node 0 (round robin, its default router)",
    }
    o = instance.engine.overhead_us
    caveats = [f"TensorRT-LLM runs context servers without the overlap scheduler "
               f"(disable_overlap_scheduler: true, as its disaggregated examples say it is not "
               f"supported there): each prefill step pays its host time, which the plan costs at "
               f"{o:g} µs (engine.step_overhead_us; plan with the measured value)"]
    caveats += [c for c in (_transfer_caveat(
        instance, plan, ev, "TensorRT-LLM's cache transceiver sends a request's KV cache when its "
        "context phase completes"),) if c]
    files = {"disagg_config.yaml": yaml.safe_dump(config, sort_keys=False)}
    return _Pair(pools, [router], files, connect, caveats)


def _check_disagg_config(config: dict) -> None:
    keys = engine_flags("trtllm").sections["disaggregated"]["config_keys"]
    for key, value in config.items():
        if key not in keys[""]:
            raise ValueError(f"trtllm: disagg_config.yaml has no key {key}")
        if isinstance(value, dict):
            unknown = set(value) - set(keys.get(key, ()))
            if unknown:
                raise ValueError(f"trtllm: {key} has no key {', '.join(sorted(unknown))}")


CONNECTORS = {"sglang": _sglang, "vllm": _vllm, "trtllm": _trtllm}

