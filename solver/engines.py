"""Serving engines: the defaults each one runs with, and where each default comes from.

The cost model prices a plan as the engine named in ``instance.engine`` would run it: how much of
HBM it allocates, how many tokens one scheduler step may batch (chunked prefill), what one step
costs outside the GPU kernels, in which precision expert-parallel dispatch moves tokens, and
whether it overlaps that communication with compute. A user may override any of them in the
instance (``engine: {name: sglang, overlap: two_batch}``); docs/cost-model.md lists them.

Pure data: nothing here imports the rest of the solver.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineDefaults:
    """Defaults of one engine, each with its source."""

    gpu_memory_utilization: float
    max_num_batched_tokens: int
    step_overhead_us: float
    ep_dispatch_precision: str
    version: str
    sources: dict[str, str]
    #: The engine admits a request only when KV blocks for its whole sequence (prompt + maximum
    #: output) are free, so the KV cache is sized per sequence at input + output, not at the
    #: mean context of the sequences in flight.
    kv_reserves_full_sequence: bool = False


ENGINE_DEFAULTS: dict[str, EngineDefaults] = {
    "vllm": EngineDefaults(
        gpu_memory_utilization=0.9,
        max_num_batched_tokens=8192,
        step_overhead_us=0.0,
        ep_dispatch_precision="bf16",
        version="0.11",
        sources={
            "gpu_memory_utilization": "vLLM engine arguments: --gpu-memory-utilization "
            "defaults to 0.9 (vllm/engine/arg_utils.py, CacheConfig).",
            "max_num_batched_tokens": "vLLM V1 default for the OpenAI server on data-centre "
            "GPUs: 8192 (vllm/engine/arg_utils.py, default_max_num_batched_tokens).",
            "step_overhead_us": "Host time of a step not hidden behind the GPU: none with "
            "--async-scheduling, which the export sets; aiconfigurator, calibrated on measured "
            "runs, charges none either. Kernel launch floors are in the measured kernel times.",
            "ep_dispatch_precision": "vLLM's default all2all backend (allgather_reducescatter) "
            "moves hidden states in the activation precision (BF16).",
            "kv_reserves_full_sequence": "No: vLLM allocates KV blocks as tokens are generated "
            "and preempts a sequence when the cache runs out.",
        },
    ),
    "sglang": EngineDefaults(
        gpu_memory_utilization=0.88,
        max_num_batched_tokens=8192,
        step_overhead_us=0.0,
        ep_dispatch_precision="fp8",
        version="0.5",
        sources={
            "gpu_memory_utilization": "SGLang --mem-fraction-static, chosen by GPU memory; "
            "0.88 on 80-192 GB GPUs at TP>=4 (python/sglang/srt/server_args.py).",
            "max_num_batched_tokens": "SGLang --chunked-prefill-size default 8192 "
            "(python/sglang/srt/server_args.py).",
            "step_overhead_us": "Host time of a step not hidden behind the GPU: none with "
            "SGLang's overlap (zero-overhead) scheduler, on by default since v0.4.",
            "ep_dispatch_precision": "DeepEP dispatch in FP8 with BF16 combine, as SGLang "
            "runs it with --moe-a2a-backend deepep (LMSYS, 2025-05-05).",
            "kv_reserves_full_sequence": "No: SGLang allocates KV as tokens are generated and "
            "retracts requests when the cache runs out.",
        },
    ),
    "trtllm": EngineDefaults(
        gpu_memory_utilization=0.9,
        max_num_batched_tokens=8192,
        step_overhead_us=0.0,
        ep_dispatch_precision="fp8",
        version="1.0",
        sources={
            "gpu_memory_utilization": "TensorRT-LLM kv_cache_config.free_gpu_memory_fraction "
            "defaults to 0.9 (tensorrt_llm/llmapi/llm_args.py).",
            "max_num_batched_tokens": "TensorRT-LLM max_num_tokens default 8192 "
            "(tensorrt_llm/llmapi/llm_args.py).",
            "step_overhead_us": "Host time of a step not hidden behind the GPU: none with "
            "TensorRT-LLM's overlap scheduler, on by default in its PyTorch backend.",
            "ep_dispatch_precision": "TensorRT-LLM wide-EP all-to-all quantises dispatch to FP8 "
            "on Hopper.",
            "kv_reserves_full_sequence": "Yes: the default capacity scheduler policy "
            "GUARANTEED_NO_EVICT admits a request only when KV blocks for its prompt plus its "
            "maximum output are free, so a started request is never paused "
            "(tensorrt_llm/llmapi/llm_args.py SchedulerConfig; TensorRT-LLM docs, 'Useful "
            "Runtime Options', Capacity Scheduler Policy).",
        },
        kv_reserves_full_sequence=True,
    ),
}

ENGINE_NAMES = tuple(ENGINE_DEFAULTS)
