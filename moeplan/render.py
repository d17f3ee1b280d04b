"""Human output of the ``moeplan`` commands: rich tables built from the dicts ``--json`` prints.

Every renderer takes a :class:`rich.console.Console` and plain data (the command's JSON document or
a report), so what a person reads and what a machine reads cannot drift apart.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# ----------------------------------------------------------------------------------------------
# Number formatting
# ----------------------------------------------------------------------------------------------


def fmt_params(n: int | None) -> str:
    """``30532122624`` -> ``30.53 B``."""
    if n is None:
        return "-"
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def fmt_seconds(s: float | None) -> str:
    """Seconds in the unit a person reads best: ``0.0123`` -> ``12.3 ms``."""
    if s is None:
        return "-"
    if s == 0:
        return "0"
    if abs(s) >= 1:
        return f"{s:.3g} s"
    if abs(s) >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_gb(gb: float | None) -> str:
    return "-" if gb is None else f"{gb:.2f} GB"


def fmt_share(part: float, total: float) -> str:
    return f"{100 * part / total:.1f}%" if total else "-"


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def _table(title: str | None = None, *columns: str, right_from: int = 1) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", show_edge=False,
              pad_edge=False)
    for i, c in enumerate(columns):
        # The first column holds names and terms: never cut them, narrow the numbers instead.
        t.add_column(c, justify="right" if i >= right_from else "left", no_wrap=i == 0)
    return t


# ----------------------------------------------------------------------------------------------
# moeplan model
# ----------------------------------------------------------------------------------------------


def render_model(console: Console, info: Mapping[str, Any]) -> None:
    """The architecture summary of ``moeplan model``."""
    a = info["attention"]
    t = _table(f"Model {escape(info['name'])}", "", "")
    t.show_header = False
    t.add_row("layers", f"{info['num_layers']} ({info['num_dense_layers']} dense, "
                        f"{info['num_moe_layers']} MoE)")
    t.add_row("hidden size", str(info["hidden_size"]))
    if a["kind"] == "mla":
        attn = (f"MLA, {a['num_heads']} heads, q_lora_rank {a['q_lora_rank']}, kv_lora_rank "
                f"{a['kv_lora_rank']}, qk {a['qk_nope_head_dim']}+{a['qk_rope_head_dim']}, "
                f"v {a['v_head_dim']}")
    else:
        attn = (f"GQA, {a['num_heads']} heads, {a['num_kv_heads']} KV heads, "
                f"head_dim {a['head_dim']}")
    if a.get("sliding_window"):
        attn += f"; window {a['sliding_window']} on {a['num_sliding_layers']} layers"
    t.add_row("attention", attn)
    if info["num_dense_layers"]:
        t.add_row("dense FFN width", str(info["dense_ffn_width"]))
    t.add_row("routed experts", f"{info['num_experts']} × width {info['expert_ffn_width']}, "
                                f"top-{info['top_k']}")
    t.add_row("shared experts", str(info["num_shared_experts"]))
    t.add_row("vocab", f"{info['vocab_size']:,}" + (" (tied)" if info["tie_embeddings"] else ""))
    t.add_row("precision", f"weights {info['weight_precision']}, experts "
                           f"{info['expert_precision']}, KV {info['kv_precision']}")
    t.add_row("total params", f"{fmt_params(info['total_params'])} ({info['total_params']:,})")
    t.add_row("active params", f"{fmt_params(info['active_params'])} "
                               f"({info['active_params']:,})")
    if info.get("declared_total_params"):
        t.add_row("declared total", fmt_params(info["declared_total_params"]))
    t.add_row("weights", f"{info['weight_bytes'] / 1e9:.2f} GB")
    t.add_row("KV cache per token", f"{info['kv_bytes_per_token']:,.0f} bytes "
                                    f"({info['kv_precision']})")
    console.print(t)


# ----------------------------------------------------------------------------------------------
# moeplan estimate (and the breakdown part of solve)
# ----------------------------------------------------------------------------------------------

_METRIC_LABELS = {
    "ttft_s": "TTFT at load (max-length prompt)",
    "ttft_idle_s": "TTFT idle (max-length prompt)",
    "tpot_s": "TPOT",
    "output_tokens_per_s": "output tokens/s (deployment)",
    "output_tokens_per_s_per_gpu": "output tokens/s per GPU",
    "tokens_per_s_per_user": "tokens/s per user",
    "requests_per_s": "requests/s (deployment)",
    "prefill_utilization": "steps carrying a prefill chunk",
    "peak_memory_gb": "peak memory per GPU",
}


def _metric_value(key: str, value: float) -> str:
    if key == "prefill_utilization":
        return f"{100 * value:.1f}%"
    if "tokens" in key or "requests" in key:
        return fmt_rate(value)
    if key.endswith("_s"):
        return fmt_seconds(value)
    if key.endswith("_gb"):
        return fmt_gb(value)
    return fmt_rate(value)


def render_degrees(console: Console, doc: Mapping[str, Any]) -> None:
    d = doc["degrees"]
    t = _table(None, *d.keys(), "GPUs", "batch", "redundant", right_from=0)
    t.add_row(*(str(v) for v in d.values()), str(doc["gpus"]), str(doc["batch"]),
              str(doc.get("redundant_experts", 0)))
    console.print(t)


def render_metrics(console: Console, metrics: Mapping[str, float],
                   budget_gb: float | None = None) -> None:
    t = _table("Metrics", "metric", "value")
    for key, value in metrics.items():
        shown = _metric_value(key, value)
        if key == "peak_memory_gb" and budget_gb:
            shown += f" of {budget_gb:.1f} GB"
        t.add_row(_METRIC_LABELS.get(key, key), shown)
    console.print(t)


def render_memory(console: Console, memory: Mapping[str, Any]) -> None:
    total = memory["total_gb"]
    t = _table(f"Memory of the fullest GPU (stage {memory['stage']})", "term", "GB", "share")
    for key, value in memory["terms_gb"].items():
        t.add_row(key, f"{value:.2f}", fmt_share(value, total))
    t.add_row("[bold]total[/]", f"[bold]{total:.2f}[/]", "")
    console.print(t)
    console.print(f"engine budget {memory['budget_gb']:.2f} GB of {memory['capacity_gb']:g} GB")


def render_time(console: Console, time: Mapping[str, Any]) -> None:
    dec, full = time["decode_step_s"], time["full_step_s"]
    sources = time.get("sources", {})
    t = _table(f"Where the time goes (slowest stage {time['stage']}, one scheduler step)",
               "term", "decode step", "share", "with a prefill chunk", "share", "source")
    dec_total, full_total = sum(dec.values()), sum(full.values())
    for k in dict.fromkeys([*dec, *full]):
        a, b = dec.get(k, 0.0), full.get(k, 0.0)
        t.add_row(k, fmt_seconds(a), fmt_share(a, dec_total), fmt_seconds(b),
                  fmt_share(b, full_total), escape(_short_source(sources.get(k, ""))))
    t.add_row("[bold]total[/]", f"[bold]{fmt_seconds(dec_total)}[/]", "",
              f"[bold]{fmt_seconds(full_total)}[/]", "", "")
    console.print(t)
    tp, tt = time["tpot"], time["ttft"]
    share = time.get("prefill_share")
    share_text = "-" if share is None else f"{100 * share:.1f}%"
    hop = f" + hop {fmt_seconds(tp['hop_s'])}" if tp["microbatches"] > 1 else ""
    console.print(
        f"TPOT = {tp['microbatches']} microbatch(es) × (average step "
        f"{fmt_seconds(tp['slowest_stage_step_s'])}{hop} + step overhead "
        f"{fmt_seconds(tp['step_overhead_s'])}) = {fmt_seconds(tp['tpot_s'])}; "
        f"{share_text} of steps carry a prefill chunk", soft_wrap=True)
    if tt["wait_rounds"] is not None:
        console.print(
            f"TTFT at load = (queue {tt['wait_rounds']:.2f} + own chunks {tt['own_chunks']:.0f}) "
            f"rounds × {fmt_seconds(tt['round_s'])} = {fmt_seconds(tt['ttft_s'])}",
            soft_wrap=True)


def _short_source(text: str) -> str:
    """``measured (aiconfigurator …: gemm fp8)`` -> ``measured``, ``roofline (mfu 0.5, …)`` ->
    ``roofline``; the full text is in ``--json`` under ``time.sources``."""
    for word in ("measured", "roofline", "engine constant", "two-batch overlap"):
        if word in text:
            return "measured + roofline" if word == "measured" and "roofline" in text else word
    return text


def render_stages(console: Console, stages: Sequence[Mapping[str, Any]]) -> None:
    t = _table("Pipeline stages", "stage", "layers", "memory GB", "avg step ms",
               "full step ms")
    for i, s in enumerate(stages):
        t.add_row(str(i), f"{s['first_layer']}-{s['last_layer']}", f"{s['memory_gb']:.2f}",
                  f"{s['step_ms']:.3f}", f"{s['full_step_ms']:.3f}")
    console.print(t)


def render_evaluation(console: Console, doc: Mapping[str, Any], *, degrees: bool = True
                      ) -> None:
    """Metrics, memory and time breakdowns and the stages of one plan (an estimate document)."""
    if degrees:
        render_degrees(console, doc)
        console.print()
    render_metrics(console, doc["metrics"], doc["memory"]["budget_gb"])
    console.print()
    render_memory(console, doc["memory"])
    console.print()
    render_time(console, doc["time"])
    console.print()
    render_stages(console, doc["stages"])
    console.print(f"expert placement: {escape(doc['placement_source'])}; expert load: "
                  f"{escape(doc['expert_load'])}; kernel data: {escape(doc['calibration'])}",
                  soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# moeplan verify
# ----------------------------------------------------------------------------------------------


def render_report(console: Console, report: Mapping[str, Any]) -> None:
    """Violations, notes and the verdict (a verify document)."""
    for v in report["violations"]:
        console.print(f"[red]{escape('[' + v['rule'] + ']')}[/] {escape(v['message'])}",
                      soft_wrap=True)
    for warning in report.get("warnings", ()):
        console.print(f"[yellow]warning[/]: {escape(warning)}", soft_wrap=True)
    for note in report["notes"]:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    n = len(report["violations"])
    if n == 0:
        console.print("[bold green]VALID[/]: the plan satisfies every rule")
    else:
        console.print(f"[bold red]INVALID[/]: {n} rule{'s' if n != 1 else ''} broken")


# ----------------------------------------------------------------------------------------------
# moeplan presets
# ----------------------------------------------------------------------------------------------


def render_presets(console: Console, doc: Mapping[str, Any]) -> None:
    t = _table("Model presets", "name", "total params", "active params", "published",
               "experts", "top-k")
    t.columns[0].min_width = max(len(m["name"]) for m in doc["models"])
    for m in doc["models"]:
        t.add_row(escape(m["name"]), fmt_params(m["total_params"]), fmt_params(m["active_params"]),
                  fmt_params(m["published_total_params"]), str(m["num_experts"]), str(m["top_k"]))
    console.print(t)
    console.print("(name@fp8 etc. selects another weight precision)")
    console.print()
    t = _table("Hardware presets", "name", "HBM GB", "HBM TB/s", "TFLOPS bf16", "TFLOPS fp8",
               "GPUs/node")
    for h in doc["hardware"]:
        fp8 = "-" if h["tflops_fp8"] is None else f"{h['tflops_fp8']:g}"
        t.add_row(escape(h["name"]), f"{h['hbm_gb']:g}", f"{h['hbm_tb_s']:g}",
                  f"{h['tflops_bf16']:g}", fp8, str(h["gpus_per_node"]))
    console.print(t)


# ----------------------------------------------------------------------------------------------
# moeplan solve
# ----------------------------------------------------------------------------------------------

#: Above this many MoE layers the placement summary is aggregated (min/median/max).
PER_LAYER_EXPERT_ROWS = 8


def render_solve_header(console: Console, doc: Mapping[str, Any]) -> None:
    status = doc["status"]
    colour = {"OPTIMAL": "green", "FEASIBLE": "yellow"}.get(status, "red")
    line = f"[bold {colour}]{status}[/]"
    if doc.get("objective") is not None:
        line += f"  {doc['objective']} GPUs"
    if status == "FEASIBLE" and doc.get("bound") is not None:
        gap = doc.get("gap")
        line += f" (bound {doc['bound']}"
        line += f", gap {100 * gap:.1f}%)" if gap is not None else ")"
    if status == "OPTIMAL":
        line += " (proved)"
    line += f"  solved in {doc['solve_time_s']:.2f} s"
    if doc.get("solver"):
        line += f" by {escape(doc['solver'])}"
    console.print(line)
    if doc.get("tie_breaks"):
        proved = set(doc.get("tie_breaks_proved") or ())
        parts = [t + ("" if t in proved or status != "OPTIMAL" else " (not proved)")
                 for t in doc["tie_breaks"]]
        console.print(escape("objective: " + ", then ".join(parts)))
    space = doc.get("search_space") or {}
    if space:
        items = ", ".join(_restriction(k, v) for k, v in space.items())
        label = "OPTIMAL within" if status == "OPTIMAL" else "searched"
        console.print(escape(f"{label}: {items}"), soft_wrap=True)
    if doc.get("expert_load"):
        console.print(escape(f"expert load: {doc['expert_load']}"), soft_wrap=True)
    if doc.get("advice"):
        console.print(f"[yellow]{escape(doc['advice'])}[/]", soft_wrap=True)


def _restriction(key: str, value: Any) -> str:
    """One entry of ``search_space`` as a reader says it: ``ep may span nodes``, ``batch
    1..65,536``, ``max_pp = 4``, ``fix tp=8, ep=8``."""
    if isinstance(value, str):
        return f"{key} {value}"
    if key == "batch" and isinstance(value, Mapping):
        return f"batch {value['min']:,}..{value['max']:,}"
    if isinstance(value, Mapping):
        return f"{key} " + ", ".join(f"{k}={v}" for k, v in value.items())
    return f"{key} = {value}"


def _share(x: float) -> str:
    return f"{100 * x:.2f}%"


def render_experts(console: Console, experts: Sequence[Mapping[str, Any]]) -> None:
    """Busiest EP rank's share of routed tokens: planner vs EPLB greedy vs the proved bound."""
    if not experts:
        return
    title = "Expert placement: busiest EP rank's share of routed tokens"
    optimal = sum(1 for e in experts if e["optimal"])
    replicated = sum(e.get("replicated_experts", 0) for e in experts)
    if len(experts) <= PER_LAYER_EXPERT_ROWS:
        t = _table(title, "layer", "planner", "greedy (EPLB)", "lower bound", "optimal",
                   "replicated")
        for e in experts:
            t.add_row(str(e["layer"]), _share(e["hottest_load"]),
                      _share(e["greedy_hottest_load"]), _share(e["lower_bound"]),
                      "yes" if e["optimal"] else "no", str(e.get("replicated_experts", 0)))
    else:
        t = _table(f"{title} ({len(experts)} MoE layers)", "", "min", "median", "max")
        for key, label in (("hottest_load", "planner"), ("greedy_hottest_load", "greedy (EPLB)"),
                           ("lower_bound", "lower bound")):
            values = [e[key] for e in experts]
            t.add_row(label, _share(min(values)), _share(statistics.median(values)),
                      _share(max(values)))
    console.print(t)
    console.print(f"placement attains the lower bound on {optimal} of {len(experts)} MoE layers; "
                  f"replicated experts: {replicated} in total")


def render_explanation(console: Console, explanation: Mapping[str, Any] | None) -> None:
    if not explanation:
        console.print("no explanation available")
        return
    console.print(escape(explanation["summary"]), soft_wrap=True)
    if explanation.get("conflicts"):
        console.print("conflicts:")
        for c in explanation["conflicts"]:
            console.print(f"  - {escape(c)}", soft_wrap=True)
    if explanation.get("nearest"):
        t = _table("Nearest feasible values", "value", "")
        for k, v in explanation["nearest"].items():
            shown = fmt_seconds(v) if k.endswith("_s") else f"{v:,.4g}"
            t.add_row(escape(k), shown)
        console.print(t)


def render_solve(console: Console, doc: Mapping[str, Any]) -> None:
    """Everything ``moeplan solve`` prints for a person, from its ``--json`` document."""
    render_solve_header(console, doc)
    console.print()
    if doc.get("comparison") or doc.get("disagg_estimate"):  # serving: disaggregated | best
        from moeplan.render_disagg import render_comparison, render_pools

        if doc.get("comparison"):
            render_comparison(console, doc["comparison"])
            console.print()
        if doc.get("disagg_estimate"):
            render_pools(console, doc["disagg_estimate"])
            if doc.get("experts"):
                console.print()
                render_experts(console, doc["experts"])
            return
    estimate = doc.get("estimate")
    if estimate is None:
        if doc["status"] == "INFEASIBLE" or doc.get("explanation"):
            render_explanation(console, doc.get("explanation"))
        return
    render_degrees(console, estimate)
    console.print()
    render_evaluation(console, estimate, degrees=False)
    if doc.get("experts"):
        console.print()
        render_experts(console, doc["experts"])
