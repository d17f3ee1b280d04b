"""What ``moeplan solve``, ``estimate`` and ``verify`` do with two-pool (disaggregated) plans.

``estimate`` and ``verify`` take a two-pool plan from ``--plan`` (a plan file, a ``solve --json``
document of a disaggregated answer, or ``prefill:<plan>;decode:<plan>``) or from the instance's
``claimed_disagg_plan``; ``solve`` on a ``serving: disaggregated | best`` instance prints both
pools (and, for ``best``, both modes side by side) and writes the two-pool plan with ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from solver.instance import InputError, read_document
from solver.schema import DisaggPlan, Instance, SolveResult


def disagg_plan_arg(instance: Instance, plan_text: str | None) -> DisaggPlan | None:
    """The two-pool plan ``--plan`` gives, or the instance's ``claimed_disagg_plan`` when there
    is no ``--plan`` and no aggregated ``claimed_plan`` (or serving is not aggregated); None
    when the plan to use is an aggregated one."""
    from solver import disagg

    if plan_text is None:
        if instance.claimed_disagg_plan is not None and (
                instance.claimed_plan is None or instance.serving != "aggregated"):
            return instance.claimed_disagg_plan
        return None
    if "prefill:" in plan_text.lower() or "decode:" in plan_text.lower():
        return disagg.parse_disagg_plan_arg(plan_text)
    path = Path(plan_text)
    if "=" in plan_text or not path.is_file():
        return None
    data = read_document(path)
    if not disagg.is_disagg_document(data):
        return None
    return disagg.disagg_plan_from_dict(data)


def _needs_rate(instance: Instance) -> None:
    if instance.workload.targets.min_output_tokens_per_s is None:
        raise InputError("workload.targets.min_output_tokens_per_s: required to cost a two-pool "
                         "plan (both pools are sized for the request rate it implies)",
                         "workload.targets.min_output_tokens_per_s")


def estimate_document(instance: Instance, evaluation: Any) -> dict[str, Any]:
    from solver import contract

    return contract.dump(contract.disagg_estimate_document(instance, evaluation))


def estimate(instance: Instance, plan: DisaggPlan, as_json: bool, console: Console,
             emit_json, warn) -> None:
    """``moeplan estimate`` of a two-pool plan."""
    from solver import disagg

    _needs_rate(instance)
    report = disagg.verify(instance, plan)
    if report.violations:
        n = len(report.violations)
        warn(f"warning: plan breaks {n} rule{'s' if n != 1 else ''}; run moeplan verify")
    doc = estimate_document(instance, report.evaluation)
    if as_json:
        emit_json(doc)
        return
    from moeplan.render_disagg import render_pools

    console.print(escape(f"{instance.name}: {instance.model.name} on {instance.hardware.name}, "
                         f"input {instance.workload.input_len}, output "
                         f"{instance.workload.output_len}, engine {instance.engine.name}, "
                         "disaggregated"))
    render_pools(console, doc)


def verify(instance: Instance, plan: DisaggPlan, as_json: bool, console: Console,
           emit_json) -> bool:
    """``moeplan verify`` of a two-pool plan; True when valid."""
    from moeplan import render
    from solver import contract, disagg

    _needs_rate(instance)
    report = disagg.verify(instance, plan)
    doc = contract.dump(contract.verify_out(report, None).model_copy(update={
        "disagg_estimate": contract.disagg_estimate_document(instance, report.evaluation)}))
    if as_json:
        emit_json(doc)
    else:
        render.render_report(console, doc)
    return report.valid


def solve_estimate(instance: Instance, result: SolveResult) -> dict[str, Any] | None:
    """The estimate of a disaggregated answer's plan, for the solve document."""
    if result.disagg_plan is None:
        return None
    from solver import disagg

    return estimate_document(instance, disagg.evaluate(instance, result.disagg_plan))


def after_solve(instance: Instance, result: SolveResult, out: Path | None, warn) -> None:
    """A disaggregated answer: re-check it, and write it with ``--out``."""
    from solver import contract, disagg

    if result.disagg_plan is None:
        return
    report = disagg.verify(instance, result.disagg_plan)
    if report.violations:  # the planner and the verifier disagree: a bug, said loudly
        warn(f"warning: the planner's two-pool plan breaks {len(report.violations)} rules (a "
             f"bug, please report it): {report.violations[0]}")
    if out is not None:
        text = json.dumps(contract.dump(contract.disagg_plan_file(result.disagg_plan)), indent=2)
        try:
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--out: cannot write {out} ({exc.strerror})", "out") from None


__all__ = ["after_solve", "disagg_plan_arg", "estimate", "solve_estimate", "verify", "typer"]
