"""``moeplan export``: a plan's launch commands and files for vLLM, SGLang or TensorRT-LLM (a
two-pool plan: both pools' commands and the front that connects them)."""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from moeplan import oneline
from moeplan.cli import (
    EXIT_NEGATIVE,
    JsonOption,
    _stderr_line,
    command,
    emit_json,
    oneline_or_file,
    plan_arg,
)
from solver.instance import InputError


class EngineName(str, Enum):
    vllm = "vllm"
    sglang = "sglang"
    trtllm = "trtllm"


@command("export")
def export_cmd(
    instance_path: Annotated[str | None, typer.Argument(
        metavar="[INSTANCE]", help="Instance file (YAML or JSON), or the one-line flags.",
        show_default=False)] = None,
    engine: Annotated[EngineName, typer.Option(
        "--engine", help="The engine to launch: vllm, sglang or trtllm.")] = EngineName.vllm,
    plan_text: Annotated[str | None, typer.Option(
        "--plan", metavar="FILE_OR_SPEC",
        help="The plan: solve --out, solve --json or pareto --out output, tp=..,ep=.. or "
        "prefill:...;decode:... (a two-pool plan); default: solve the instance first.")] = None,
    kv_backend: Annotated[str | None, typer.Option(
        "--kv-backend", metavar="NAME",
        help="Two-pool plans: the KV transfer backend (sglang: mooncake (default) or nixl; "
        "vllm: nixl; trtllm: ucx (default) or nixl).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="DIR", help="Write the files and one launch script per node here.",
    )] = None,
    model_path: Annotated[str | None, typer.Option(
        "--model-path", metavar="PATH_OR_ID",
        help="What the engine loads (default: the preset's Hugging Face id).")] = None,
    as_json: JsonOption = False,
    model: oneline.Model = None, gpu: oneline.Gpu = None, isl: oneline.Isl = None,
    osl: oneline.Osl = None, ttft: oneline.Ttft = None, tpot: oneline.Tpot = None,
    rate: oneline.Rate = None, max_gpus: oneline.MaxGpus = None,
) -> None:
    """Launch commands (one per node) and the files they read, for the plan on one engine.

    A two-pool (disaggregated) plan gives both pools' commands and the front that connects
    them. The engine version and the source of its option list are printed; what the engine
    cannot run as costed is refused (exit 2) or, where it still starts, listed as a caveat.
    """
    from solver.contract import dump
    from solver.export import export_plan, write_export

    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a directory", "out")
    instance = oneline_or_file(instance_path, model=model, gpu=gpu, isl=isl, osl=osl, ttft=ttft,
                               tpot=tpot, rate=rate, max_gpus=max_gpus, engine=None)
    from moeplan.cmd_disagg import disagg_plan_arg

    plan = disagg_plan_arg(instance, plan_text) if plan_text is not None else None
    if plan is None and plan_text is not None:
        plan = plan_arg(instance, plan_text)
    elif plan is None:
        from solver import planner

        result = planner.solve(instance)
        plan = result.plan or result.disagg_plan
        if plan is None:
            _stderr_line(f"error: solve: no plan to export ({result.status})")
            raise typer.Exit(EXIT_NEGATIVE)
    doc = export_plan(instance, plan, engine.value, model_path=model_path,
                      kv_backend=kv_backend)
    if out is not None:
        try:
            write_export(doc, out)
            (out / "export.json").write_text(json.dumps(dump(doc), indent=1) + "\n")
        except OSError as exc:
            raise InputError(f"--out: cannot write {out} ({exc.strerror})", "out") from None
    if as_json:
        emit_json(dump(doc))
        return
    if getattr(doc, "serving", None) == "disaggregated":
        _render_disagg(doc, out)
    else:
        _render(doc, out)


def _command_line(launch) -> str:
    env = " ".join(f"{k}={shlex.quote(v) if '${' not in v else chr(34) + v + chr(34)}"
                   for k, v in launch.env.items())
    cmd = " ".join(shlex.quote(a) if "${" not in a else f'"{a}"' for a in launch.command)
    return (env + " " if env else "") + cmd


def _render_disagg(doc, out: Path | None) -> None:
    """Both pools (first replica of each), the front, what connects them, the caveats."""
    echo = typer.echo
    echo(f"{doc.engine} {doc.engine_version}: two pools, KV transfer {doc.kv_backend} "
         f"(the plan assumed kv_transfer: {doc.kv_transfer})")
    echo(f"options checked against {doc.flags_source}")
    for pool in (doc.prefill, doc.decode):
        d = pool.degrees
        step = (f", {pool.tokens_per_step} prompt tokens per rank and step"
                if pool.tokens_per_step else "")
        echo("")
        echo(f"{pool.pool} pool: {d.short()}, batch {pool.batch}{step}, "
             f"{pool.redundant_experts} redundant expert slots; each instance: "
             f"{pool.nodes_per_instance} node(s) x {pool.gpus_per_node} GPUs")
        echo(f"expert placement: {pool.placement}")
        for launch in (x for x in pool.launches if x.replica == 0):
            target = f"  -> {out / launch.script}" if out else ""
            echo(f"# {pool.pool} node {launch.node} ({launch.gpus} GPUs){target}")
            echo(_command_line(launch))
        if d.replicas > 1:
            echo(f"# {pool.pool} replicas 1..{d.replicas - 1}: the same commands with their own "
                 "HEAD_ADDR")
        if pool.files:
            echo(f"{pool.pool} files: " + ", ".join(pool.files))
    echo("")
    for launch in doc.router:
        target = f"  -> {out / launch.script}" if out else ""
        echo(f"# the front (PREFILLr_ADDR, DECODEr_ADDR: node 0 of each instance){target}")
        echo(_command_line(launch))
    if doc.files:
        where = f" (in {out})" if out else " (written with --out DIR)"
        echo("files" + where + ": " + ", ".join(doc.files))
    echo("")
    echo("what connects the pools:")
    for key, value in doc.connect.items():
        echo(f"  {key}: {value}")
    for pool in (doc.prefill, doc.decode):
        echo(f"settings the cost model prices, {pool.pool} pool:")
        for key, value in pool.settings.items():
            echo(f"  {key}: {value}")
    for caveat in doc.caveats:
        echo(f"caveat: {caveat}")


def _render(doc, out: Path | None) -> None:
    d = doc.degrees
    echo = typer.echo
    echo(f"{doc.engine} {doc.engine_version}: {d.short()}, batch {doc.batch}, "
         f"{doc.redundant_experts} redundant expert slots")
    echo(f"options checked against {doc.flags_source}")
    echo(f"each instance: {doc.nodes_per_instance} node(s) x {doc.gpus_per_node} GPUs; "
         f"{d.replicas} replica(s)")
    echo(f"expert placement: {doc.placement}")
    echo("")
    shown = [launch for launch in doc.launches if launch.replica == 0]
    for launch in shown:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in launch.env.items())
        cmd = " ".join(shlex.quote(a) if "${" not in a else f'"{a}"' for a in launch.command)
        target = f"  -> {out / launch.script}" if out else ""
        echo(f"# node {launch.node} ({launch.gpus} GPUs){target}")
        echo((env + " " if env else "") + cmd)
    if d.replicas > 1:
        echo(f"# replicas 1..{d.replicas - 1}: the same commands with their own HEAD_ADDR")
    if doc.files:
        echo("")
        where = f" (in {out})" if out else " (written with --out DIR)"
        echo("files" + where + ": " + ", ".join(doc.files))
    echo("")
    echo("settings the cost model prices, as set:")
    for key, value in doc.settings.items():
        echo(f"  {key}: {value}")
    for caveat in doc.caveats:
        echo(f"caveat: {caveat}")
