"""The ``moeplan`` command: plan, check and explain MoE deployments from the shell.

Human tables by default, ``--json`` for machines (then stdout holds the JSON document and nothing
else; warnings go to stderr). Every document (``--json`` output, ``solve --out``) carries
``schema_version`` and validates against the JSON Schema ``moeplan schema --what ...`` exports
(:mod:`solver.contract`). Exit codes, for every command:

- 0: done (``verify``: the plan is valid; ``solve``: a plan was found);
- 1: a negative answer (``verify``: the plan breaks rules; ``solve``: INFEASIBLE or no plan found;
  ``bench``: some instance is ERROR);
- 2: bad input, reported as one line ``error: <field>: <rule>`` on stderr; also a ``--server``
  that cannot be used: unreachable, refusing the token, or answering with an error status
  (``error: --server: HOST answered RESOURCE_EXHAUSTED: ...``);
- 3: a bug, reported as one line ``internal error: ...`` (the traceback with ``MOEPLAN_DEBUG=1``).

Commands are registered on the module-level :data:`app` with :func:`command`, which adds the
error handling above; ``serve`` and ``bench`` are added the same way (see the end of this module).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from moeplan import __version__, oneline, render
from solver.instance import InputError, load_instance, parse_plan_arg, validation_error
from solver.schema import MAX_TIME_LIMIT_S, Instance, Plan, SolveResult

try:  # typer >= 0.16 vendors click; older releases depend on it
    from typer._click.exceptions import (
        BadParameter,
        ClickException,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import (
        BadParameter,
        ClickException,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )

DEBUG_ENV = "MOEPLAN_DEBUG"
EXIT_NEGATIVE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3

# ----------------------------------------------------------------------------------------------
# Error reporting: one line on stderr, a stable exit code, never a traceback
# ----------------------------------------------------------------------------------------------


def _stderr_line(text: str) -> None:
    """Exactly one line on stderr (never wrapped: rich is not used here)."""
    sys.stderr.write(" ".join(str(text).split()) + "\n")
    sys.stderr.flush()


def _usage_line(exc: ClickException) -> str:
    """typer/click usage errors in our ``error: <field>: <rule>`` form."""
    param = getattr(exc, "param", None)
    message = getattr(exc, "message", None) or exc.format_message()
    message = message.removeprefix("Value error, ")  # pydantic's wording, via typer's enums
    if (isinstance(exc, BadParameter) and not isinstance(exc, MissingParameter)
            and param is not None):
        opts = getattr(param, "opts", None) or []
        field = max(opts, key=len) if param.param_type_name == "option" and opts else (
            param.human_readable_name)
        line = f"{field}: {message}"
    else:
        line = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        line += f" (see '{ctx.command_path} --help')"
    return f"error: {line}"


class OneLineErrorGroup(TyperGroup):
    """The command group, reporting usage errors (bad options, missing arguments, unknown
    commands or choices) as one ``error:`` line with exit code 2 instead of a rich panel."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # the help is already printed
            sys.exit(exc.exit_code)
        except ClickException as exc:
            _stderr_line(_usage_line(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            _stderr_line("error: aborted")
            sys.exit(EXIT_NEGATIVE)
        # Non-standalone mode returns the exit code of ``typer.Exit`` (or the callback's None).
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="moeplan",
    cls=OneLineErrorGroup,
    help="Plan deployments of Mixture-of-Experts LLMs on GPUs, proved optimal by OR-Tools CP-SAT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn :class:`InputError` into ``error: ...`` + exit 2 and anything unexpected into
    ``internal error: ...`` + exit 3. typer's own exits and usage errors pass through."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, ClickException, KeyboardInterrupt, BrokenPipeError):
            raise
        except InputError as exc:
            _stderr_line(f"error: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exc(file=sys.stderr)
            _stderr_line(f"internal error: {type(exc).__name__}: {exc} "
                         f"(set {DEBUG_ENV}=1 for the traceback)")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``@app.command(...)`` with :func:`handle_errors`; use it for every command."""

    def register(fn: F) -> F:
        app.command(*args, **kwargs)(handle_errors(fn))
        return fn

    return register


def as_input_error(exc: ValueError, field: str) -> InputError:
    """Any ValueError raised while resolving user input, as a one-line :class:`InputError`."""
    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, ValidationError):
        return validation_error(exc, field)
    text = " ".join(str(exc).split())
    return InputError(f"{field}: {text}", field)


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


#: Width of the human output when stdout is not a terminal (a pipe or a file): wide enough that
#: no table wraps, where rich would otherwise assume 80 columns.
PIPE_WIDTH = 160


def _console() -> Console:
    # Built per call so it writes to whatever sys.stdout is now (tests swap it).
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit_json(doc: Any) -> None:
    typer.echo(json.dumps(_finite(doc), indent=2))


def load_instance_arg(path: str) -> Instance:
    try:
        return load_instance(path)
    except ValueError as exc:
        raise as_input_error(exc, "instance") from None


def oneline_or_file(path: str | None, *, write_instance: Path | None = None,
                    **flags: Any) -> Instance:
    """The instance of ``path``, or of the one-line flags (moeplan.oneline); not both."""
    if path is not None:
        if oneline.given(**flags) or write_instance is not None:
            raise InputError("INSTANCE: give an instance file or the one-line flags "
                             "(--model --gpu ...), not both", "instance")
        return load_instance_arg(path)
    if not oneline.given(**flags):
        raise InputError("INSTANCE: required: an instance file, or the one-line flags "
                         "(--model --gpu --isl --osl ...)", "instance")
    doc = oneline.instance_document(**flags)
    try:
        from solver.instance import instance_from_dict

        instance = instance_from_dict(doc)
    except ValueError as exc:
        raise as_input_error(exc, "instance") from None
    if write_instance is not None:
        oneline.write_instance(doc, write_instance)
    return instance


def plan_arg(instance: Instance, plan_text: str | None) -> Plan:
    """The plan given by ``--plan`` (spec string or file), else the instance's claimed plan."""
    if plan_text is None:
        if instance.claimed_plan is None:
            raise InputError("--plan: required, the instance has no claimed_plan "
                             "(e.g. --plan tp=8,ep=8 or --plan plan.yaml)", "plan")
        return instance.claimed_plan
    batch = instance.workload.batch
    try:
        return parse_plan_arg(plan_text, batch if isinstance(batch, int) else None)
    except ValueError as exc:
        raise as_input_error(exc, "--plan") from None


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]
InstanceArg = Annotated[str, typer.Argument(
    metavar="INSTANCE", help="Instance file (YAML or JSON).", show_default=False)]
PlanOption = Annotated[str | None, typer.Option(
    "--plan", metavar="SPEC_OR_FILE",
    help="A plan: 'tp=8,ep=8,pp=2[,batch=N]' (missing degrees are 1) or a YAML/JSON plan file. "
    "Default: the instance's claimed_plan.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"moeplan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Plan deployments of Mixture-of-Experts LLMs on GPUs, proved optimal by OR-Tools CP-SAT.

    Exit codes: 0 done, 1 negative answer (invalid plan, no feasible plan, a bench instance
    in ERROR), 2 bad input (or an unusable --server), 3 internal error.
    """


# ----------------------------------------------------------------------------------------------
# moeplan model
# ----------------------------------------------------------------------------------------------


def _schema_version() -> str:
    from solver.contract import SCHEMA_VERSION

    return SCHEMA_VERSION


def model_summary(spec: Any) -> dict[str, Any]:
    """Architecture, parameter counts, weight and KV-cache bytes of a :class:`ModelSpec`
    (the :class:`ModelOut` document)."""
    from solver.params import (
        active_params,
        check_declared,
        kv_bytes_per_token,
        layer_params,
        param_bytes,
        total_params,
    )

    a = spec.attention
    total = total_params(spec)
    routed = sum(lp.expert * lp.num_experts
                 for lp in (layer_params(spec, i) for i in range(spec.num_layers)))
    # As the cost model stores them: routed experts at the expert precision, the rest (attention,
    # dense FFN, shared experts, router, embeddings) at the weight precision.
    weight_bytes = (param_bytes(total - routed, spec.weight_precision)
                    + param_bytes(routed, spec.expert_weight_precision))
    attention: dict[str, Any] = {
        "kind": a.kind,
        "num_heads": a.num_heads,
        "num_kv_heads": a.num_kv_heads,
        "head_dim": a.head_dim,
        "sliding_window": a.sliding_window,
        "num_sliding_layers": len(a.sliding_layers),
    }
    if a.kind == "mla":
        attention.update(q_lora_rank=a.q_lora_rank, kv_lora_rank=a.kv_lora_rank,
                         qk_nope_head_dim=a.qk_nope_head_dim,
                         qk_rope_head_dim=a.qk_rope_head_dim, v_head_dim=a.v_head_dim)
    from solver.contract import ModelOut

    return ModelOut.model_validate({
        "schema_version": _schema_version(),
        "name": spec.name,
        "num_layers": spec.num_layers,
        "num_dense_layers": len(spec.dense_layers),
        "num_moe_layers": len(spec.moe_layers),
        "hidden_size": spec.hidden_size,
        "attention": attention,
        "dense_ffn_width": spec.dense_ffn_width,
        "num_experts": spec.num_experts,
        "top_k": spec.top_k,
        "expert_ffn_width": spec.expert_ffn_width,
        "num_shared_experts": spec.num_shared_experts,
        "shared_expert_width": spec.shared_width if spec.num_shared_experts else 0,
        "vocab_size": spec.vocab_size,
        "tie_embeddings": spec.tie_embeddings,
        "weight_precision": spec.weight_precision,
        "expert_precision": spec.expert_weight_precision,
        "kv_precision": spec.kv_precision,
        "weight_block_size": spec.weight_block_size,
        "total_params": total,
        "active_params": active_params(spec),
        "routed_expert_params": routed,
        "declared_total_params": spec.declared_total_params,
        "weight_bytes": weight_bytes,
        "kv_bytes_per_token": kv_bytes_per_token(spec),
        "warning": check_declared(spec),
    }).model_dump(mode="json")


@command("model")
def model_cmd(
    preset_or_path: Annotated[str, typer.Argument(
        metavar="PRESET_OR_PATH",
        help="A preset name (qwen3-235b-a22b, name@fp8), a config.json or a directory holding one.",
        show_default=False)],
    precision: Annotated[str | None, typer.Option(
        "--precision", help="Store all weights (experts included) at this precision, e.g. fp8.",
    )] = None,
    as_json: JsonOption = False,
) -> None:
    """Parameter counts, weight bytes and KV-cache size of a model."""
    from solver.hf_import import PRECISIONS
    from solver.models import resolve_model

    value: str | dict[str, Any] = preset_or_path
    if precision is not None:
        if precision not in PRECISIONS:
            raise InputError(f"--precision: unknown precision '{precision}'; use one of "
                             f"{', '.join(sorted(PRECISIONS))}", "precision")
        value = {"hf_config": preset_or_path, "weight_precision": precision}
    try:
        spec = resolve_model(value)
    except ValueError as exc:
        raise as_input_error(exc, "model") from None
    info = model_summary(spec)
    if as_json:
        emit_json(info)
        return
    if info["warning"]:
        _stderr_line(f"warning: {info['warning']}")
    render.render_model(_console(), info)


# ----------------------------------------------------------------------------------------------
# moeplan estimate / verify
# ----------------------------------------------------------------------------------------------


def estimate_document(instance: Instance, evaluation: Any) -> dict[str, Any]:
    """The estimate document of an evaluated plan (solver.contract.EstimateOut), as JSON."""
    from solver import contract

    return contract.dump(contract.estimate_document(instance, evaluation))


@command("estimate")
def estimate_cmd(
    instance_path: InstanceArg,
    plan: PlanOption = None,
    as_json: JsonOption = False,
) -> None:
    """Metrics of a plan with the breakdown of its memory and time (cost model, no solving)."""
    from moeplan import cmd_disagg
    from solver.verify import verify

    instance = load_instance_arg(instance_path)
    two_pools = cmd_disagg.disagg_plan_arg(instance, plan)
    if two_pools is not None:  # a prefill and a decode pool
        cmd_disagg.estimate(instance, two_pools, as_json, _console(), emit_json, _stderr_line)
        return
    chosen = plan_arg(instance, plan)
    report = verify(instance, chosen)  # evaluates the plan once and checks it
    evaluation = report.evaluation
    assert evaluation is not None  # verify always evaluates
    if report.violations:
        n = len(report.violations)
        _stderr_line(f"warning: plan breaks {n} rule{'s' if n != 1 else ''}; run moeplan verify")
    doc = estimate_document(instance, evaluation)
    if as_json:
        emit_json(doc)
        return
    console = _console()
    console.print(escape(f"{instance.name}: {instance.model.name} on {instance.hardware.name}, "
                         f"input {instance.workload.input_len}, output "
                         f"{instance.workload.output_len}, engine {instance.engine.name}"))
    render.render_evaluation(console, doc)


@command("verify")
def verify_cmd(
    instance_path: InstanceArg,
    plan: PlanOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a plan against every rule (exit 1 if it breaks any).

    Without --plan, checks the instance's claimed_plan (claimed_disagg_plan for a two-pool
    plan). A two-pool plan: a plan file, or --plan "prefill:dp=8,ep=8,tokens=8192;decode:...".
    """
    from moeplan import cmd_disagg
    from solver import contract
    from solver.verify import verify

    instance = load_instance_arg(instance_path)
    two_pools = cmd_disagg.disagg_plan_arg(instance, plan)
    if two_pools is not None:  # a prefill and a decode pool
        if not cmd_disagg.verify(instance, two_pools, as_json, _console(), emit_json):
            raise typer.Exit(EXIT_NEGATIVE)
        return
    chosen = plan_arg(instance, plan)
    report = verify(instance, chosen)
    estimate = None
    if report.evaluation is not None:
        estimate = contract.estimate_document(instance, report.evaluation)
    doc = contract.dump(contract.verify_out(report, estimate))
    if as_json:
        emit_json(doc)
    else:
        render.render_report(_console(), doc)
    if not report.valid:
        raise typer.Exit(EXIT_NEGATIVE)


# ----------------------------------------------------------------------------------------------
# moeplan schema / presets
# ----------------------------------------------------------------------------------------------


class SchemaWhat(str, Enum):
    instance = "instance"
    plan = "plan"
    solve = "solve"
    result = "result"
    verify = "verify"
    estimate = "estimate"
    model = "model"
    presets = "presets"
    disagg_plan = "disagg-plan"
    disagg_estimate = "disagg-estimate"
    export = "export"
    disagg_export = "disagg-export"
    pareto = "pareto"


def document_schema(what: str) -> dict[str, Any]:
    """JSON Schema of a document moeplan writes (``result`` is ``solve``'s)."""
    from solver import contract

    return contract.json_schema("solve" if what == "result" else what)


@command("schema")
def schema_cmd(
    what: Annotated[SchemaWhat, typer.Option(
        "--what", help="Which document: instance (the file moeplan reads), plan (solve --out), "
        "solve / result (solve --json), verify (verify --json), estimate (estimate --json), "
        "model (model --json), presets (presets --json), disagg-plan (solve --out of a "
        "two-pool answer), disagg-estimate (estimate --json of a two-pool plan), export or "
        "disagg-export (export --json of a plan or a two-pool plan), pareto.",
    )] = SchemaWhat.instance,
) -> None:
    """JSON Schema of an instance (default) or of a document moeplan writes."""
    if what == SchemaWhat.instance:
        from solver.instance import instance_file_json_schema

        emit_json(instance_file_json_schema())
        return
    emit_json(document_schema(what.value))


def presets_document() -> dict[str, Any]:
    from solver.hardware import HARDWARE_PRESETS
    from solver.params import active_params, total_params
    from solver.presets import PUBLISHED_TOTAL_PARAMS, load_model_preset, model_preset_names

    models = []
    for name in model_preset_names():
        spec = load_model_preset(name)
        models.append({
            "name": name,
            "total_params": total_params(spec),
            "active_params": active_params(spec),
            "published_total_params": PUBLISHED_TOTAL_PARAMS.get(name),
            "num_experts": spec.num_experts,
            "top_k": spec.top_k,
            "weight_precision": spec.weight_precision,
            "expert_precision": spec.expert_weight_precision,
        })
    hardware = [
        {
            "name": name,
            "hbm_gb": hw.hbm_gb,
            "hbm_tb_s": hw.hbm_tb_s,
            "tflops_bf16": hw.peak_tflops.get("bf16"),
            "tflops_fp8": hw.peak_tflops.get("fp8"),
            "gpus_per_node": hw.gpus_per_node,
        }
        for name, hw in HARDWARE_PRESETS.items()
    ]
    from solver.contract import PresetsOut

    return PresetsOut(schema_version=_schema_version(), models=models,
                      hardware=hardware).model_dump(mode="json")


@command("presets")
def presets_cmd(as_json: JsonOption = False) -> None:
    """The bundled model and hardware presets."""
    doc = presets_document()
    if as_json:
        emit_json(doc)
    else:
        render.render_presets(_console(), doc)


# ----------------------------------------------------------------------------------------------
# moeplan solve
# ----------------------------------------------------------------------------------------------


def solve_document(instance: Instance, result: SolveResult) -> dict[str, Any]:
    """``solve --json``: the solve result and the estimate of its plan (solver.contract)."""
    from solver import contract
    from solver.estimate import evaluate

    estimate = None
    if result.plan is not None:
        estimate = contract.estimate_document(instance, evaluate(instance, result.plan))
    doc = contract.dump(contract.solve_out(result, estimate))
    if result.disagg_plan is not None:  # serving: disaggregated (or best, answered so)
        from moeplan import cmd_disagg

        doc["disagg_estimate"] = cmd_disagg.solve_estimate(instance, result)
    return doc


def _check_out_path(out: Path) -> None:
    """Fail before a long solve, not after it."""
    if out.is_dir():
        raise InputError(f"--out: {out} is a directory, expected a file name", "out")
    if not out.parent.is_dir():
        raise InputError(f"--out: directory {out.parent} does not exist", "out")


def _check_server(server: str) -> None:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--server: expected HOST:PORT, got '{server}'", "server")


def _solve_remote(
    server: str, instance: Instance, time_limit_s: float | None, workers: int | None
) -> SolveResult:
    try:
        from service.client import PlannerClient, RemoteError
    except ImportError as exc:
        raise InputError(f"--server: the gRPC client is not available ({exc})", "server") from None
    client = PlannerClient(server)
    try:
        return client.solve(instance, time_limit_s=time_limit_s, workers=workers)
    except ConnectionError as exc:
        raise InputError(f"--server: cannot reach {server} ({exc})", "server") from None
    except RemoteError as exc:  # busy, out of time, a server-side failure: the server's word
        raise InputError(f"--server: {server} answered {exc.code.name}: {exc.message}",
                         "server") from None
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


@command("solve")
def solve_cmd(
    instance_path: Annotated[str | None, typer.Argument(
        metavar="[INSTANCE]", help="Instance file (YAML or JSON), or the one-line flags.",
        show_default=False)] = None,
    as_json: JsonOption = False,
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", metavar="SECONDS",
        help="Solver time limit (default: the instance's search.time_limit_s).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="CP-SAT workers (default: the instance's search.workers).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="Write the plan as JSON (usable with verify --plan).",
    )] = None,
    server: Annotated[str | None, typer.Option(
        "--server", metavar="HOST:PORT", help="Solve on a moeplan gRPC server.")] = None,
    model: oneline.Model = None, gpu: oneline.Gpu = None, isl: oneline.Isl = None,
    osl: oneline.Osl = None, ttft: oneline.Ttft = None, tpot: oneline.Tpot = None,
    rate: oneline.Rate = None, max_gpus: oneline.MaxGpus = None, engine: oneline.Engine = None,
    write_instance: oneline.WriteInstance = None,
) -> None:
    """Find the plan with the fewest GPUs that meets every target, proved optimal.

    Give an INSTANCE file, or the question in one line: --model --gpu --isl --osl [--ttft
    --tpot --rate --max-gpus --engine] (--write-instance FILE saves it as an instance file).

    Exit 1 when no plan exists (INFEASIBLE, with an explanation) or none was found in time.
    """
    from solver.verify import verify

    if time_limit is not None and not (math.isfinite(time_limit)
                                       and 0 < time_limit <= MAX_TIME_LIMIT_S):
        raise InputError(f"--time-limit: must be in (0, {MAX_TIME_LIMIT_S:g}] seconds, "
                         f"got {time_limit}", "time_limit")
    if workers is not None and not 0 < workers <= 256:
        raise InputError(f"--workers: must be in [1, 256], got {workers}", "workers")
    if out is not None:
        _check_out_path(out)
    if server is not None:
        _check_server(server)
    instance = oneline_or_file(instance_path, model=model, gpu=gpu, isl=isl, osl=osl, ttft=ttft,
                               tpot=tpot, rate=rate, max_gpus=max_gpus, engine=engine,
                               write_instance=write_instance)

    if server is not None:
        result = _solve_remote(server, instance, time_limit, workers)
    else:
        from solver import planner  # lazily: the other commands work without it

        result = planner.solve(instance, time_limit_s=time_limit, workers=workers)

    if result.plan is not None:
        report = verify(instance, result.plan)
        if report.violations:  # the planner and the verifier disagree: a bug, said loudly
            _stderr_line(f"warning: the planner's plan breaks {len(report.violations)} rules "
                         f"(a bug, please report it): {report.violations[0]}")
        if out is not None:
            from solver import contract

            text = json.dumps(contract.dump(contract.plan_file(result.plan)), indent=2)
            try:
                out.write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--out: cannot write {out} ({exc.strerror})", "out") from None
    elif result.disagg_plan is not None:
        from moeplan import cmd_disagg

        cmd_disagg.after_solve(instance, result, out, _stderr_line)
    elif out is not None:
        _stderr_line(f"warning: no plan to write to {out} ({result.status})")

    doc = solve_document(instance, result)
    if as_json:
        emit_json(doc)
    else:
        render.render_solve(_console(), doc)
    if result.plan is None and result.disagg_plan is None:
        raise typer.Exit(EXIT_NEGATIVE)


# ----------------------------------------------------------------------------------------------
# moeplan serve / bench / plot live in their own modules; importing them registers the commands
# with @command(...) so they share the error handling above. They import heavy dependencies
# (gRPC, matplotlib, Ray) lazily inside the command functions.
# ----------------------------------------------------------------------------------------------

for _module in ("moeplan.cmd_serve", "moeplan.cmd_bench", "moeplan.cmd_export",
                "moeplan.cmd_pareto"):
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name != _module:
            raise


def main() -> None:
    """Entry point of the ``moeplan`` script and ``python -m moeplan``."""
    app(prog_name="moeplan")
