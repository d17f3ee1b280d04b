"""Human output of two-pool (disaggregated) plans and of ``serving: best`` comparisons, from
their JSON documents (:class:`solver.contract.DisaggEstimateOut`, ``SolveResult.comparison``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from moeplan.render import _table, fmt_gb, fmt_rate, fmt_seconds


def _degrees(d: Mapping[str, int]) -> str:
    shown = {k: v for k, v in d.items() if k != "replicas" and (v != 1 or k in ("tp", "dp"))}
    return " ".join(f"{k}{v}" for k, v in shown.items()) + f" ×{d['replicas']}"


def render_pools(console: Console, est: Mapping[str, Any]) -> None:
    """Both pools side by side, then the TTFT and the KV transfer."""
    t = _table(f"Two pools: {est['gpus']} GPUs at {est['request_rate_per_s']:,.4g} requests/s",
               "pool", "degrees × replicas", "GPUs", "batch", "step", "capacity", "load",
               "peak memory", right_from=2)
    for name in ("prefill", "decode"):
        p = est[name]
        batch = (f"{p['tokens_per_step']:,} tok/rank" if name == "prefill"
                 else f"{p['batch']:,} seq")
        unit = "in tok/s" if name == "prefill" else "out tok/s"
        t.add_row(name, escape(_degrees(p["degrees"])), str(p["gpus"]), batch,
                  fmt_seconds(p["slowest_stage_step_s"]), f"{fmt_rate(p['capacity'])} {unit}",
                  f"{100 * p['utilization']:.1f}%",
                  f"{fmt_gb(p['peak_memory_gb'])} of {p['memory_budget_gb']:.1f} GB")
    console.print(t)
    m, ttft, kv = est["metrics"], est["ttft"], est["kv_transfer"]
    t = _table("Metrics at the planned rate", "metric", "value")
    t.add_row("TTFT (max-length prompt)", f"{fmt_seconds(ttft['ttft_s'])} = queue "
              f"{fmt_seconds(ttft['queue_wait_s'])} + prefill {fmt_seconds(ttft['prefill_s'])} "
              f"({ttft['rounds']} round{'s' if ttft['rounds'] != 1 else ''}) + KV transfer "
              f"{fmt_seconds(ttft['kv_transfer_s'])}")
    t.add_row("TPOT (decode pool)", fmt_seconds(m["tpot_s"]))
    t.add_row("output tokens/s", fmt_rate(m["output_tokens_per_s"]))
    t.add_row("output tokens/s per GPU", fmt_rate(m["output_tokens_per_s_per_gpu"]))
    t.add_row("tokens/s per user", fmt_rate(m["tokens_per_s_per_user"]))
    t.add_row("KV transfer per request", f"{kv['bytes_per_request'] / 1e9:.3f} GB over "
              f"{kv['streams']} link{'s' if kv['streams'] != 1 else ''} of "
              f"{kv['link_gb_s']:g} GB/s: {fmt_seconds(kv['total_s'])}, exposed "
              f"{fmt_seconds(kv['exposed_s'])} ({kv['overlap']})")
    console.print(t)
    console.print(escape(f"queue: {ttft['queue_model']}"), soft_wrap=True)


def render_comparison(console: Console, comparison: Mapping[str, Any]) -> None:
    """``serving: best``: the aggregated and the disaggregated answer side by side."""
    t = _table("Aggregated vs disaggregated (same targets)", "mode", "status", "GPUs", "bound",
               "TTFT", "TPOT", "tok/s per GPU", "solve time", right_from=2)
    for name in ("aggregated", "disaggregated"):
        f = comparison[name]
        mark = " ◀" if comparison["chosen"] == name else ""
        t.add_row(name + mark, f["status"], "-" if f["gpus"] is None else str(f["gpus"]),
                  "-" if f["bound"] is None else str(f["bound"]), fmt_seconds(f["ttft_s"]),
                  fmt_seconds(f["tpot_s"]), fmt_rate(f["output_tokens_per_s_per_gpu"]),
                  f"{f['solve_time_s']:.2f} s")
    console.print(t)
    console.print(escape(f"chosen: {comparison['chosen']} ({comparison['reason']})"),
                  soft_wrap=True)
