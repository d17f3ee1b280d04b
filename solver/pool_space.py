"""The plan space of each pool of a disaggregated deployment, defined once for verify, the
planner and the reference (as :mod:`solver.space` is for an aggregated deployment).

- **Decode pool**: the aggregated space without the prefill-queue rule (no prompt shares a
  decode step): every structural rule of :mod:`solver.rules` but ``prefill_keeps_up``, the
  instance's restrictions, the workload's batch range.
- **Prefill pool**: the degree rules (:data:`solver.rules.GRID_RULES`) and the instance's
  restrictions on degrees and replicas; it has no batch of sequences (its batch is the token
  choice, one of ``disaggregation.prefill_tokens``), so the attention-DP degree is not capped by
  the workload's batch.
"""

from __future__ import annotations

from typing import Any, Literal

from solver import rules
from solver.rules import Violation
from solver.schema import BatchRange, Grid, Instance
from solver.space import PlanSpace

Pool = Literal["prefill", "decode"]

#: The decode pool's structural rules: every rule but the prefill queue's.
DECODE_RULES: tuple[rules.Rule, ...] = tuple(r for r in rules.RULES
                                             if r is not rules.prefill_keeps_up)


class PoolSpace(PlanSpace):
    """The plan space of one pool."""

    def __init__(self, instance: Instance, pool: Pool):
        self.pool = pool
        self.pool_name = pool
        self.source = instance
        if pool == "prefill":  # no batch of sequences: dp is not capped by it
            instance = instance.model_copy(update={"workload": instance.workload.model_copy(
                update={"batch": BatchRange()})})
        super().__init__(instance)

    def q_range(self, grid: Grid) -> tuple[int, int] | None:
        if self.pool == "prefill":
            return (1, 1)
        lo = -(-self.bmin // grid.dp)
        hi = self.bmax // grid.dp
        return (lo, hi) if lo <= hi else None

    def violations(self, grid: Grid, batch: int, redundant: int, replicas: int | None = None
                   ) -> list[Violation]:
        if self.pool == "prefill":
            return (rules.violations(self.shape(grid, grid.dp, redundant), rules.GRID_RULES)
                    + self.restriction_violations(grid, self.bmin, replicas))
        return (rules.violations(self.shape(grid, batch, redundant), DECODE_RULES)
                + self.restriction_violations(grid, batch, replicas))


def disagg_restrictions(instance: Instance) -> dict[str, Any]:
    """What a disaggregated answer echoes as its ``search_space``: the restrictions of the
    decode pool's space (they hold for both pools, the batch for the decode pool) and the
    prefill token choices."""
    out = PlanSpace(instance).restrictions()
    out["prefill_tokens"] = list(instance.disaggregation.prefill_tokens)
    out["kv_transfer"] = instance.disaggregation.kv_transfer
    return out
