#!/usr/bin/env python3
"""Reference serving estimates from NVIDIA aiconfigurator (AIC) at fixed configurations.

NOT part of moeplan and not importable by it: run it with the separate AIC virtualenv,

    python3 -m venv /work/aic-venv && /work/aic-venv/bin/pip install aiconfigurator
    /work/aic-venv/bin/python benchmarks/aic_reference.py            # all configurations
    /work/aic-venv/bin/python benchmarks/aic_reference.py --only q235-h200-tp8ep8-b64-1k1k

It calls AIC's programmatic equivalent of ``aiconfigurator cli estimate`` (``cli_estimate`` in
``aiconfigurator.cli.api``) once per configuration in aggregated (IFB) mode on AIC's measured
("SILICON") perf database, and once more with ``database_mode="SOL"`` to get AIC's own
speed-of-light per-op times for the same configuration. Results go to
``benchmarks/data/aic_estimates.json`` (see ``NOTES`` below for the meaning of every field).

Each configuration's ``cli`` field is the equivalent shell command line.

Conventions (AIC's, recorded as-is):
- times are milliseconds; memory is GiB (2**30 bytes) even where AIC prints "GB";
- ``batch_size`` is per attention-DP rank (AIC's ``--batch-size``); the global number of
  concurrent requests is ``batch_size * attention_dp_size`` (AIC's ``concurrency``);
- ``tokens_s_gpu`` divides the instance's output token rate by tp*pp*dp (= GPUs of one instance).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "data" / "aic_estimates.json"

# Model ids. Mixtral-8x7B ships a config in aiconfigurator_core/model_configs but is not in
# AIC's DefaultHFModels list in 0.12.0 (AIC would try to download it from Hugging Face); the script
# copies the packaged config.json into a temporary directory and passes that path instead.
Q235 = "Qwen/Qwen3-235B-A22B-FP8"
DSV3 = "deepseek-ai/DeepSeek-V3"
Q30 = "Qwen/Qwen3-30B-A3B-FP8"
MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"  # resolved to a local dir, see _model_path
GPTOSS = "openai/gpt-oss-120b"


def C(cid, model, system, *, tp, ep, etp=1, dp=1, pp=1, bs, isl, osl, why, **quant):
    """One configuration. etp = moe_tp_size, ep = moe_ep_size (AIC requires tp*dp == etp*ep)."""
    return {
        "id": cid,
        "model": model,
        "system": system,
        "backend": "trtllm",
        "tp_size": tp,
        "pp_size": pp,
        "attention_dp_size": dp,
        "moe_tp_size": etp,
        "moe_ep_size": ep,
        "batch_size": bs,
        "isl": isl,
        "osl": osl,
        "why": why,
        **({"quant_overrides": quant} if quant else {}),
    }


CONFIGS = [
    # ---- Qwen3-235B-A22B-FP8 (fp8 block weights; AIC infers fp8 KV and fp8 FMHA) --------------
    C(
        "q235-h200-tp8ep8-b8-1k1k",
        Q235,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=8,
        isl=1000,
        osl=1000,
        why="typical launch: TP8 attention + EP8 experts on one 8xH200 node; small batch",
    ),
    C(
        "q235-h200-tp8ep8-b64-1k1k",
        Q235,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=64,
        isl=1000,
        osl=1000,
        why="typical launch, medium batch",
    ),
    C(
        "q235-h200-tp8ep8-b256-1k1k",
        Q235,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=256,
        isl=1000,
        osl=1000,
        why="typical launch, large batch",
    ),
    C(
        "q235-h200-tp8ep8-b64-4k500",
        Q235,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=64,
        isl=4000,
        osl=500,
        why="long prompt / short answer",
    ),
    C(
        "q235-h200-tp8ep8-b128-2k200",
        Q235,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=128,
        isl=2000,
        osl=200,
        why="prefill-heavy mix",
    ),
    C(
        "q235-h200-dp8ep8-b32-1k1k",
        Q235,
        "h200_sxm",
        tp=1,
        dp=8,
        ep=8,
        bs=32,
        isl=1000,
        osl=1000,
        why="attention-DP8 + EP8 (global concurrency 256) vs TP8 at the same concurrency",
    ),
    C(
        "q235-h200-tp4ep4-b64-1k1k",
        Q235,
        "h200_sxm",
        tp=4,
        ep=4,
        bs=64,
        isl=1000,
        osl=1000,
        why="half node (4xH200)",
    ),
    C(
        "q235-h100-tp8ep8-b16-1k1k",
        Q235,
        "h100_sxm",
        tp=8,
        ep=8,
        bs=16,
        isl=1000,
        osl=1000,
        why="8xH100 TP8/EP8, small batch",
    ),
    C(
        "q235-h100-tp8ep8-b64-4k500",
        Q235,
        "h100_sxm",
        tp=8,
        ep=8,
        bs=64,
        isl=4000,
        osl=500,
        why="8xH100, long prompt",
    ),
    C(
        "q235-h100-tp8ep8-b256-1k1k",
        Q235,
        "h100_sxm",
        tp=8,
        ep=8,
        bs=256,
        isl=1000,
        osl=1000,
        why="8xH100, large batch",
    ),
    C(
        "q235-h100-tp8ep8-b256-4k1k",
        Q235,
        "h100_sxm",
        tp=8,
        ep=8,
        bs=256,
        isl=4096,
        osl=1024,
        why="workload of moeplan instance qwen3-235b-a22b-fp8-h100.yaml (may exceed KV capacity)",
    ),
    # ---- DeepSeek-V3 (fp8 block weights; AIC infers fp8 KV; MLA context FMHA falls back to bf16)
    C(
        "dsv3-h200-dp8ep8-b8-1k1k",
        DSV3,
        "h200_sxm",
        tp=1,
        dp=8,
        ep=8,
        bs=8,
        isl=1000,
        osl=1000,
        why="typical DeepSeek launch: attention-DP8 + EP8 on 8xH200; global concurrency 64",
    ),
    C(
        "dsv3-h200-dp8ep8-b32-1k1k",
        DSV3,
        "h200_sxm",
        tp=1,
        dp=8,
        ep=8,
        bs=32,
        isl=1000,
        osl=1000,
        why="attention-DP8 + EP8, global concurrency 256",
    ),
    C(
        "dsv3-h200-dp8ep8-b128-2k200",
        DSV3,
        "h200_sxm",
        tp=1,
        dp=8,
        ep=8,
        bs=128,
        isl=2000,
        osl=200,
        why="attention-DP8 + EP8, global concurrency 1024, prefill-heavy",
    ),
    C(
        "dsv3-h200-dp8ep8-b32-4k1k",
        DSV3,
        "h200_sxm",
        tp=1,
        dp=8,
        ep=8,
        bs=32,
        isl=4096,
        osl=1024,
        why="workload of moeplan instance deepseek-v3-h200.yaml (256 concurrent, 4k/1k)",
    ),
    C(
        "dsv3-h200-tp8ep8-b64-1k1k",
        DSV3,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=64,
        isl=1000,
        osl=1000,
        why="TP8 attention (MLA replicated latent) + EP8",
    ),
    C(
        "dsv3-h200-tp8ep8-b16-4k500",
        DSV3,
        "h200_sxm",
        tp=8,
        ep=8,
        bs=16,
        isl=4000,
        osl=500,
        why="TP8 + EP8, small batch, long prompt",
    ),
    C(
        "dsv3-h100-dp16ep16-b16-1k1k",
        DSV3,
        "h100_sxm",
        tp=1,
        dp=16,
        ep=16,
        bs=16,
        isl=1000,
        osl=1000,
        why="2 nodes of 8xH100 (model does not fit 8x80 GB): attention-DP16 + EP16 across nodes",
    ),
    C(
        "dsv3-h100-tp8pp2ep8-b64-1k1k",
        DSV3,
        "h100_sxm",
        tp=8,
        pp=2,
        ep=8,
        bs=64,
        isl=1000,
        osl=1000,
        why="2 nodes of 8xH100: TP8 x PP2, EP8 inside each stage",
    ),
    # ---- Qwen3-30B-A3B-FP8 ----
    C(
        "q30-h200-tp1-b8-1k1k",
        Q30,
        "h200_sxm",
        tp=1,
        ep=1,
        bs=8,
        isl=1000,
        osl=1000,
        why="single GPU, small batch",
    ),
    C(
        "q30-h200-tp1-b64-1k1k",
        Q30,
        "h200_sxm",
        tp=1,
        ep=1,
        bs=64,
        isl=1000,
        osl=1000,
        why="single GPU, medium batch",
    ),
    C(
        "q30-h200-tp1-b256-2k200",
        Q30,
        "h200_sxm",
        tp=1,
        ep=1,
        bs=256,
        isl=2000,
        osl=200,
        why="single GPU, large batch, prefill-heavy",
    ),
    C(
        "q30-h200-tp2ep2-b128-1k1k",
        Q30,
        "h200_sxm",
        tp=2,
        ep=2,
        bs=128,
        isl=1000,
        osl=1000,
        why="TP2 attention + EP2 experts",
    ),
    C(
        "q30-h100-tp1-b16-1k1k",
        Q30,
        "h100_sxm",
        tp=1,
        ep=1,
        bs=16,
        isl=1000,
        osl=1000,
        why="single H100, small batch",
    ),
    C(
        "q30-h100-tp1-b256-2k200",
        Q30,
        "h100_sxm",
        tp=1,
        ep=1,
        bs=256,
        isl=2000,
        osl=200,
        why="single H100, large batch",
    ),
    C(
        "q30-h100-tp2etp2-b64-4k500",
        Q30,
        "h100_sxm",
        tp=2,
        ep=1,
        etp=2,
        bs=64,
        isl=4000,
        osl=500,
        why="TP2 everywhere (expert TP2), long prompt",
    ),
    # ---- Mixtral-8x7B (bf16 checkpoint; fp8 run via explicit quant overrides)
    C(
        "mixtral-h100-tp2etp2-b64-2k512",
        MIXTRAL,
        "h100_sxm",
        tp=2,
        ep=1,
        etp=2,
        bs=64,
        isl=2048,
        osl=512,
        why="bf16, TP2; workload of moeplan instance mixtral-8x7b-h100.yaml at batch 64",
    ),
    C(
        "mixtral-h100-tp1-fp8-b256-500x146",
        MIXTRAL,
        "h100_sxm",
        tp=1,
        ep=1,
        bs=256,
        isl=500,
        osl=146,
        gemm_quant_mode="fp8",
        moe_quant_mode="fp8",
        kvcache_quant_mode="fp8",
        fmha_quant_mode="fp8",
        why="MLPerf v4.1 offline-like layout (TP1 per GPU, FP8 weights/KV); batch 256, not 640",
    ),
    # ---- gpt-oss-120b (mxfp4 experts -> AIC moe dtype w4a16_mxfp4; bf16 attention) ---------------
    C(
        "gptoss-h200-tp1-b64-1k1k",
        GPTOSS,
        "h200_sxm",
        tp=1,
        ep=1,
        bs=64,
        isl=1000,
        osl=1000,
        why="single H200",
    ),
    C(
        "gptoss-h100-tp2ep2-b64-1k1k",
        GPTOSS,
        "h100_sxm",
        tp=2,
        ep=2,
        bs=64,
        isl=1000,
        osl=1000,
        why="2xH100 TP2 + EP2",
    ),
    C(
        "gptoss-h100-tp4ep4-b256-2k2k",
        GPTOSS,
        "h100_sxm",
        tp=4,
        ep=4,
        bs=256,
        isl=2048,
        osl=2048,
        why="workload of moeplan instance gpt-oss-120b-h100.yaml (2k/2k, 256 concurrent)",
    ),
]

NOTES = {
    "units": "times in ms; memory in GiB (2**30 B); rates per second",
    "ttft_ms": "AIC agg TTFT = mix_step_ms * ceil(isl/ctx_tokens) * queuing_factor (+ encoder); "
    "trtllm queuing_factor = min(2 + (ceil(isl*bs/ctx_tokens) - 3)/20, 4) (base_backend.py)",
    "tpot_ms": "AIC agg TPOT = (mix_ms*(n_mix-3) + genonly_ms*n_genonly) / (n_mix-3 + n_genonly) "
    "for trtllm when n_mix < osl",
    "tokens_s": "output tokens/s of one instance (all attention-DP ranks): "
    "1000*bs*(osl-1)/(n_mix*mix_ms + n_genonly*genonly_ms) * pp * dp",
    "tokens_s_gpu": "tokens_s / (tp*pp*dp)",
    "tokens_s_user": "1000 / tpot_ms",
    "request_rate": "seq/s = tokens_s / (osl-1)",
    "batch_size": "per attention-DP rank; concurrency = batch_size * attention_dp_size",
    "ctx_tokens": "AIC default = isl (one whole prompt per mixed step)",
    "memory_gib": "AIC memory model per GPU: weights + kvcache(bs*(isl+osl)) + activations"
    "(2*max_num_tokens(8192)*heads*head_dim*coef) + nccl + others(3.5 GiB)",
    "kv_capacity_seqs": "derived here, not printed by AIC: "
    "floor(((cap-non_kv)*0.9*(1-0.015)*(1-0.02))"
    " / (kvcache/bs)), TRT-LLM free_gpu_memory_fraction=0.9 semantics; sequences per attention-DP "
    "rank at max_seq_len = isl + osl",
    "per_op_ms": "per-op latency of one engine step summed over layers; 'mix_step' = one mixed "
    "chunk (ctx_tokens prompt tokens + decode rows), 'genonly_step' = one decode-only step at "
    "kv length isl + osl//2 + 1",
    "per_op_sol_ms": "the same ops under database_mode=SOL (AIC roofline: max(2mnk/peak, "
    "bytes/mem_bw) per op, no efficiency factors); sol/silicon = AIC's in-context efficiency",
}


def _model_path(model: str, tmpdir: Path) -> str:
    if model != MIXTRAL:
        return model
    import aiconfigurator_core

    src = (
        Path(aiconfigurator_core.__file__).parent
        / "model_configs"
        / "mistralai--Mixtral-8x7B-v0.1_config.json"
    )
    dst = tmpdir / "Mixtral-8x7B-v0.1"
    dst.mkdir(exist_ok=True)
    shutil.copy(src, dst / "config.json")
    return str(dst)


def _cli_line(cfg: dict) -> str:
    model = (
        cfg["model"] if cfg["model"] != MIXTRAL else "<dir with AIC's packaged Mixtral config.json>"
    )
    parts = [
        "aiconfigurator cli estimate",
        f"--model-path {model}",
        f"--system {cfg['system']}",
        f"--backend {cfg['backend']}",
        f"--isl {cfg['isl']} --osl {cfg['osl']}",
        f"--batch-size {cfg['batch_size']}",
        f"--tp-size {cfg['tp_size']} --pp-size {cfg['pp_size']}",
        f"--attention-dp-size {cfg['attention_dp_size']}",
        f"--moe-tp-size {cfg['moe_tp_size']} --moe-ep-size {cfg['moe_ep_size']}",
    ]
    for k, v in cfg.get("quant_overrides", {}).items():
        parts.append(f"--{k.replace('_', '-')} {v}")
    parts.append("--detail all")
    return " ".join(parts)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except Exception:  # noqa: BLE001 - best effort for numpy scalars
            pass
    if isinstance(obj, float):
        return _finite(round(obj, 6))
    if isinstance(obj, (int, str, bool)) or obj is None:
        return obj
    return str(obj)


def _estimate(cli_estimate, cfg: dict, model_path: str, database_mode: str):
    return cli_estimate(
        model_path,
        cfg["system"],
        mode="agg",
        backend_name=cfg["backend"],
        database_mode=database_mode,
        isl=cfg["isl"],
        osl=cfg["osl"],
        batch_size=cfg["batch_size"],
        tp_size=cfg["tp_size"],
        pp_size=cfg["pp_size"],
        attention_dp_size=cfg["attention_dp_size"],
        moe_tp_size=cfg["moe_tp_size"],
        moe_ep_size=cfg["moe_ep_size"],
        **cfg.get("quant_overrides", {}),
    )


def run_one(cli_estimate, cfg: dict, tmpdir: Path) -> dict:
    model_path = _model_path(cfg["model"], tmpdir)
    out: dict = {"config": dict(cfg), "cli": _cli_line(cfg)}
    t0 = time.time()
    try:
        r = _estimate(cli_estimate, cfg, model_path, "SILICON")
    except Exception as exc:  # noqa: BLE001 - record AIC's refusal and go on
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    raw = r.raw
    summary = r.summary
    mem = dict(summary.get_memory()) if summary is not None else {}
    cap_gib = (summary._mem_capacity_bytes or 0) / 2**30 if summary is not None else None
    kv_cap = None
    if mem and mem.get("kvcache", 0) > 0 and cap_gib:
        non_kv = mem["total"] - mem["kvcache"]
        budget = (cap_gib - non_kv) * 0.9 * (1 - 0.015) * (1 - 0.02)
        kv_cap = int(max(0.0, budget) // (mem["kvcache"] / cfg["batch_size"]))
    out.update(
        {
            "aic_backend": raw.get("backend"),
            "aic_backend_version": raw.get("version"),
            "aic_system": raw.get("system"),
            "quant": {k: raw.get(k) for k in ("gemm", "moe", "kvcache", "fmha", "comm")},
            "parallel": raw.get("parallel"),
            "num_gpus": raw.get("num_total_gpus"),
            "concurrency": raw.get("concurrency"),
            "ctx_tokens": raw.get("ctx_tokens"),
            "ttft_ms": raw.get("ttft"),
            "tpot_ms": raw.get("tpot"),
            "request_latency_ms": raw.get("request_latency"),
            "tokens_s": raw.get("tokens/s"),
            "tokens_s_gpu": raw.get("tokens/s/gpu"),
            "tokens_s_user": raw.get("tokens/s/user"),
            "request_rate": raw.get("request_rate"),
            "memory_gib": mem,
            "memory_capacity_gib": cap_gib,
            "kv_capacity_seqs": kv_cap,
            "kv_cache_warning": r.kv_cache_warning,
            "moe_comm_fallbacks": [str(f) for f in (r.moe_comm_fallbacks or ())],
            "scheduling": (r.per_ops_data or {}).get("scheduling"),
            "per_op_ms": {k: v for k, v in (r.per_ops_data or {}).items() if k != "scheduling"},
            "per_op_source": r.per_ops_source,
            "raw": raw,
        }
    )
    try:
        s = _estimate(cli_estimate, cfg, model_path, "SOL")
        out["sol"] = {
            "ttft_ms": s.raw.get("ttft"),
            "tpot_ms": s.raw.get("tpot"),
            "tokens_s_gpu": s.raw.get("tokens/s/gpu"),
        }
        out["per_op_sol_ms"] = {
            k: v for k, v in (s.per_ops_data or {}).items() if k != "scheduling"
        }
    except Exception as exc:  # noqa: BLE001
        out["sol_error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.time() - t0, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="configuration ids to run (default: all)")
    ap.add_argument("--list", action="store_true", help="print the configurations and exit")
    ap.add_argument("--verbose", action="store_true", help="keep AIC's own log output")
    args = ap.parse_args(argv)

    if args.list:
        for c in CONFIGS:
            print(f"{c['id']:36s} {_cli_line(c)}")
        return 0

    if not args.verbose:
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        os.environ.setdefault("AICONFIGURATOR_LOG_LEVEL", "ERROR")
    try:
        from aiconfigurator.cli.api import cli_estimate
    except ImportError:
        print(
            "aiconfigurator is not importable: run with /work/aic-venv/bin/python", file=sys.stderr
        )
        return 2

    selected = [c for c in CONFIGS if not args.only or c["id"] in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="aic_ref_") as td:
        for cfg in selected:
            res = run_one(cli_estimate, cfg, Path(td))
            results.append(_clean(res))
            if "error" in res:
                print(f"{cfg['id']:36s} ERROR {res['error'][:160]}", flush=True)
            else:
                print(
                    f"{cfg['id']:36s} TTFT {res['ttft_ms']:9.1f} ms  TPOT "
                    f"{res['tpot_ms']:7.2f} ms  "
                    f"{res['tokens_s_gpu']:8.1f} tok/s/GPU  {res['tokens_s_user']:6.1f} tok/s/user"
                    + ("  [KV>capacity]" if res.get("kv_cache_warning") else ""),
                    flush=True,
                )

    doc = {
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aiconfigurator_version": metadata.version("aiconfigurator"),
        "aiconfigurator_core_version": metadata.version("aiconfigurator-core"),
        "python": platform.python_version(),
        "license": "AIC (and its perf database) is Apache-2.0; these are AIC outputs",
        "script": "benchmarks/aic_reference.py",
        "command": "/work/aic-venv/bin/python benchmarks/aic_reference.py",
        "mode": "agg (IFB / continuous batching), database_mode SILICON; SOL run for per_op_sol_ms",
        "notes": NOTES,
        "results": results,
    }
    if args.only and args.out.exists():
        # merge into an existing file, replacing the re-run ids
        old = json.loads(args.out.read_text())
        keep = [
            r for r in old.get("results", []) if r.get("config", {}).get("id") not in set(args.only)
        ]
        doc["results"] = keep + results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out} ({len(doc['results'])} configurations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
