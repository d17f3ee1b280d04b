"""From a plan to a deployment: launch commands and files for vLLM, SGLang and TensorRT-LLM.

:func:`export_plan` returns the :class:`~solver.contract.ExportOut` document (commands per node,
the files they read, the engine version and where its options were read) of a plan, or the
:class:`~solver.contract.DisaggExportOut` of a two-pool plan (each pool's commands and files, the
front that connects them: :mod:`solver.export.disagg`); :func:`write_export` writes either as a
directory of launch scripts. Pure library: nothing here imports gRPC. docs/export.md describes
the mapping per engine and what each engine cannot express.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from solver.contract import DisaggExportOut, ExportOut, LaunchOut
from solver.export.engines import ExportError, build, check_engine, refuse_invalid
from solver.export.flags import engine_flags
from solver.instance import InputError
from solver.schema import DisaggPlan, Instance, Plan
from solver.verify import verify

__all__ = ["ENGINES", "ExportError", "export_plan", "write_export"]

ENGINES = ("vllm", "sglang", "trtllm")


def export_plan(instance: Instance, plan: Plan | DisaggPlan, engine: str, *,
                model_path: str | None = None, kv_backend: str | None = None
                ) -> ExportOut | DisaggExportOut:
    """The launch commands of ``plan`` (which must pass :func:`solver.verify.verify`, or
    :func:`solver.disagg.verify` for a two-pool plan) for ``engine``; raises
    :class:`ExportError` (an ``InputError``) when the engine cannot express the plan.
    ``kv_backend`` (two-pool plans only): the KV transfer backend, e.g. SGLang's ``mooncake``
    (default) or ``nixl``."""
    if engine not in ENGINES:
        raise InputError(f"engine: '{engine}' is not one of {', '.join(ENGINES)}", "engine")
    if isinstance(plan, DisaggPlan):
        from solver.export.disagg import export_disagg

        return export_disagg(instance, plan, engine, model_path=model_path,
                             kv_backend=kv_backend)
    if kv_backend is not None:
        raise InputError("kv_backend: only a two-pool (disaggregated) plan transfers KV "
                         "between instances", "kv_backend")
    caveats: list[str] = []
    planned_for = instance.engine.name
    if engine != planned_for:
        # The plan was costed for another engine: judge it under this one's defaults (settings
        # the instance gives explicitly are kept).
        instance = instance.model_copy(
            update={"engine": instance.engine.model_copy(update={"name": engine})})
    check_engine(engine, instance, plan)  # what the engine cannot express, before the rest
    report = verify(instance, plan)
    refuse_invalid(engine, planned_for, report)
    if engine != planned_for:
        m = report.evaluation.metrics
        caveats.append(f"the plan was made for {planned_for}; under {engine}'s settings moeplan "
                       f"prices it at TPOT {m.tpot_s * 1e3:.2f} ms, TTFT {m.ttft_s:.3f} s, "
                       f"{m.output_tokens_per_s_per_gpu:.1f} tokens/s per GPU and it still "
                       "meets every target")
    built, lay, path = build(instance, plan, engine, model_path)
    d = plan.degrees
    launches = []
    for replica in range(d.replicas):
        for launch in built.launches:
            launches.append(LaunchOut(
                replica=replica, node=launch.node, gpus=launch.gpus, command=launch.command,
                env=launch.env, script=f"replica{replica}-node{launch.node}.sh"))
    flags = engine_flags(engine)
    red = 0 if d.ep == 1 else (plan.redundant_experts if plan.redundant_experts is not None
                               else instance.search.redundant_experts)
    return ExportOut(
        engine=engine, engine_version=flags.version,
        flags_source=f"{flags.data_file}: {flags.source_line()}", model_path=path,
        degrees=d, batch=plan.batch, redundant_experts=red, nodes_per_instance=lay.nodes,
        gpus_per_node=lay.per_node, placement=built.placement, settings=built.settings,
        launches=launches, files=built.files, caveats=caveats + built.caveats)


_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def _address_help(var: str, replica: int, pool: str) -> str:
    """What one ``${...}`` placeholder of a launch script stands for."""
    if var == "HEAD_ADDR":
        return f"the address of node 0 of {pool}replica {replica}"
    m = re.fullmatch(r"(PREFILL|DECODE)(\d+)_ADDR", var)
    if m:
        return f"the address of node 0 of {m.group(1).lower()} replica {m.group(2)}"
    return "that node's address"


def launch_script(doc: ExportOut | DisaggExportOut, launch: LaunchOut,
                  render: dict[str, str] | None = None) -> str:
    """A POSIX shell script for one node: checks the addresses it needs, sets the environment,
    writes the files ``render`` names with their ``${...}`` filled in, runs the command from the
    directory holding the export's files."""
    if isinstance(doc, ExportOut):
        where = (f"replica {launch.replica}, node {launch.node} of {doc.nodes_per_instance} "
                 f"({launch.gpus} GPUs)")
        pool = ""
    elif launch.script.startswith(("prefill/", "decode/")):
        pool = launch.script.split("/")[0]
        where = (f"{pool} pool, replica {launch.replica}, node {launch.node} of "
                 f"{getattr(doc, pool).nodes_per_instance} ({launch.gpus} GPUs)")
        pool += " "
    else:
        where, pool = "the front of the two pools", ""
    lines = ["#!/bin/sh", f"# moeplan export: {doc.engine} {doc.engine_version}, {where}",
             "set -eu", 'cd "$(dirname "$0")"']
    render = render or {}
    texts = [" ".join(launch.command), *launch.env.values(), *render.values()]
    seen: list[str] = []
    for text in texts:
        seen += [v for v in _PLACEHOLDER.findall(text) if v not in seen]
    for var in sorted(seen, key=lambda v: (v != "HEAD_ADDR", v)):
        help_text = _address_help(var, launch.replica, pool)
        lines.append(f': "${{{var}:?set {var} to {help_text}}}"')
    for key, value in launch.env.items():
        lines.append(f"export {key}={_shell_word(value)}")
    for name, content in render.items():  # a template: the shell fills in ${...}
        lines += [f"cat > {shlex.quote(name)} <<EOF", content.rstrip("\n"), "EOF"]
    lines.append("exec " + " ".join(_shell_word(a) for a in launch.command))
    return "\n".join(lines) + "\n"


def _shell_word(arg: str) -> str:
    if "${" in arg and "'" not in arg and '"' not in arg:
        return f'"{arg}"'  # let the shell expand ${HEAD_ADDR}
    return shlex.quote(arg)


def write_export(doc: ExportOut | DisaggExportOut, out: Path) -> list[Path]:
    """Write the files and one launch script per node and replica into ``out`` (a two-pool
    export: each pool's in ``prefill/`` and ``decode/``, the front's and a README.md at the
    top)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(path: Path, content: str, script: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        if script:
            path.chmod(0o755)
        written.append(path)

    if isinstance(doc, ExportOut):
        for name, content in doc.files.items():
            write(out / name, content)
        for launch in doc.launches:
            write(out / launch.script, launch_script(doc, launch), script=True)
        return written
    for pool in (doc.prefill, doc.decode):
        for name, content in pool.files.items():
            write(out / pool.pool / name, content)
        for launch in pool.launches:
            write(out / launch.script, launch_script(doc, launch), script=True)
    for name, content in doc.files.items():
        write(out / name, content)
    for launch in doc.router:
        render = {n: c for n, c in doc.files.items() if n in launch.command and "${" in c}
        write(out / launch.script, launch_script(doc, launch, render), script=True)
    write(out / "README.md", readme(doc))
    return written


def readme(doc: DisaggExportOut) -> str:
    """How to start a two-pool export: which script on which node, in which order."""
    lines = [f"# {doc.engine} {doc.engine_version}: a prefill pool and a decode pool", "",
             f"Model: {doc.model_path}. KV transfer: {doc.kv_backend}. Options checked against "
             f"{doc.flags_source}.", ""]
    step = 1
    for pool in (doc.decode, doc.prefill):
        d = pool.degrees
        lines.append(f"{step}. The {pool.pool} pool: {d.replicas} instance(s) of "
                     f"{pool.nodes_per_instance} node(s) x {pool.gpus_per_node} GPUs "
                     f"({d.short()}). On node N of instance R run `{pool.pool}/replicaR-nodeN.sh` "
                     "with HEAD_ADDR set to node 0 of that instance (and NODEn_ADDR where a "
                     "script asks for it).")
        step += 1
    if doc.router:
        front = " ".join(doc.router[0].command)
        lines.append(f"{step}. The front, on any host that reaches node 0 of every instance: "
                     "`router.sh` with PREFILLr_ADDR and DECODEr_ADDR set to node 0 of prefill "
                     f"and decode instance r; clients talk to it: {front}")
    else:
        lines.append(f"{step}. The front: {doc.engine} ships none (see the caveats).")
    lines += ["", "What connects the pools:", ""]
    lines += [f"- {key}: {value}" for key, value in doc.connect.items()]
    if doc.caveats:
        lines += ["", "Caveats:", ""]
        lines += [f"- {c}" for c in doc.caveats]
    return "\n".join(lines) + "\n"
