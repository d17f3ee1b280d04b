"""The plan space: every plan shape the planner searches, the reference enumerates and verify
accepts, defined once.

A *grid* is one serving instance's degrees ``(tp, cp, dp, ep, etp, edp, pp)``; a plan adds the
batch (``dp · q`` for ``q`` sequences per attention-DP rank), the redundant expert slots, the
stages, the placement and the replicas. The space holds every grid and batch that

- no structural rule rejects (:mod:`solver.rules`: divisibility, GPU identity, node rules,
  quantisation blocks, the prefill queue), and
- the instance's own restrictions admit: ``search.fix``/``forbid``, ``max_pp``/``max_cp``/
  ``max_dp`` when set, the workload's batch range.

Nothing else bounds it: pp runs up to the layer count, dp up to the batch, cp up to what the node
rule allows, EP may span nodes unless the instance says otherwise. :meth:`PlanSpace.restrictions`
is what every answer echoes as its ``search_space``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

from solver import rules, timing
from solver.rules import Shape, Violation
from solver.schema import MAX_GPUS, Grid, Instance, divisors


class PlanSpace:
    """The plan space of one instance."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.model = instance.model
        self.search = instance.search
        self.workload = instance.workload
        self.bmin, self.bmax = instance.workload.batch_bounds
        s = self.search
        # The largest s (sequences per rank and microbatch) the prefill queue can sustain.
        wl = instance.workload
        self.s_stable = timing.max_stable_s(wl.input_len, wl.output_len,
                                            instance.engine.token_budget)
        self._inner: dict[int, list[Grid]] = {}
        self.max_pp = min(self.model.num_layers, s.max_pp or self.model.num_layers)

    # -- what the answer echoes -----------------------------------------------------------------

    def restrictions(self) -> dict[str, Any]:
        """Every restriction in force, user-set or default, for ``SolveResult.search_space``."""
        s, m = self.search, self.model
        out: dict[str, Any] = {
            "tp·cp": "any size" if s.tp_cross_node else "within a node",
        }
        if m.moe_layers:
            out["ep"] = "may span nodes" if s.ep_cross_node else "within a node"
            out["redundant_experts"] = s.redundant_experts
        out["runnable on"] = self.engine_summary()
        for key in ("max_pp", "max_cp", "max_dp"):
            if getattr(s, key) is not None:
                out[key] = getattr(s, key)
        if s.fix:
            out["fix"] = dict(sorted(s.fix.items()))
        if s.forbid:
            out["forbid"] = {k: list(v) for k, v in sorted(s.forbid.items())}
        out["batch"] = (self.bmin if self.bmin == self.bmax
                        else {"min": self.bmin, "max": self.bmax})
        return out

    def engine_summary(self) -> str:
        """The engine rules in force (:data:`solver.rules.ENGINE_RULES`), as the answer echoes
        them, or that the space is engine-agnostic."""
        i = self.instance
        if not i.search.engine_rules:
            return "any engine shape (search.engine_rules: false: cp, edp > 1 searched)"
        name = i.engine.name
        out = ["cp = 1", "edp = 1"]
        if name == "vllm" and self.model.moe_layers:
            out.append("etp = 1 with ep > 1")
        if name == "trtllm":
            out.append("tp = 1 with dp > 1")
        if self.model.moe_layers:
            out.append(f"{rules.NATIVE_DISPATCH[name].upper()} dispatch")
        if name == "vllm":
            out.append("whole DP ranks per node")
        if name == "trtllm" and i.engine.overlap == "two_batch":
            out.append("no two-batch overlap")
        return f"{rules.ENGINE_VERSIONS[name]} ({', '.join(out)})"

    @property
    def cp_limit(self) -> int | None:
        """The largest cp searched: 1 under the engine rules, else ``search.max_cp``."""
        return 1 if self.search.engine_rules else self.search.max_cp

    @cached_property
    def stage_max(self) -> int | None:
        """The most GPUs a stage (tp·cp·dp) can have when the rules bound it, else None. Under
        the engine rules a MoE model's stage is its expert grid (edp = 1): etp·ep, with ep at
        most the expert slots (rules.ep_divides_slots) and etp at most a node
        (rules.etp_within_node) or the expert width. Sizes past it hold no grid, so the
        searches for the next size stop there instead of trying every size up to MAX_GPUS."""
        m, s = self.model, self.search
        if not s.engine_rules or not m.moe_layers:
            return None
        etp_max = m.expert_ffn_width if s.tp_cross_node else self.instance.hardware.gpus_per_node
        return (m.num_experts + s.redundant_experts) * etp_max

    def restricted(self) -> bool:
        """Whether the user narrowed the space beyond the defaults."""
        s = self.search
        return bool(s.fix or s.forbid or s.max_pp or s.max_cp or s.max_dp
                    or not s.ep_cross_node)

    # -- membership -----------------------------------------------------------------------------

    def allowed(self, name: str, value: int) -> bool:
        s = self.search
        if name in s.fix and s.fix[name] != value:
            return False
        return value not in s.forbid.get(name, ())

    def redundant(self, ep: int) -> int:
        return rules.default_redundant(self.search, ep)

    def shape(self, grid: Grid, batch: int, redundant: int) -> Shape:
        i = self.instance
        return Shape(model=i.model, hw=i.hardware, search=i.search, engine=i.engine,
                     workload=i.workload, grid=grid, batch=batch, redundant=redundant,
                     pool=self.pool_name)

    #: The pool this space is of ("" for an aggregated deployment; :mod:`solver.pool_space`).
    pool_name = ""

    def restriction_violations(self, grid: Grid, batch: int, replicas: int | None = None
                               ) -> list[Violation]:
        """What the instance's own restrictions reject (rule ``search_space``); the replica
        count only when given (a grid is judged before its replicas are chosen)."""
        s = self.search
        out = []
        values = {**grid._asdict(), **({} if replicas is None else {"replicas": replicas})}
        for name, value in values.items():
            if not self.allowed(name, value):
                why = (f"fixed to {s.fix[name]}" if name in s.fix and s.fix[name] != value
                       else f"forbidden ({list(s.forbid.get(name, ()))})")
                out.append(Violation("search_space", f"{name} = {value} is {why} by the "
                                     "instance's search options", f"degrees.{name}"))
        for key, value in (("max_pp", grid.pp), ("max_cp", grid.cp), ("max_dp", grid.dp)):
            limit = getattr(s, key)
            if limit is not None and value > limit:
                out.append(Violation("search_space", f"{key[4:]} = {value} exceeds "
                                     f"search.{key} = {limit}", f"search.{key}"))
        if not self.bmin <= batch <= self.bmax:
            allowed = (f"the workload's batch {self.bmin}" if self.bmin == self.bmax else
                       f"the workload's range [{self.bmin}, {self.bmax}]")
            out.append(Violation("batch", f"plan batch {batch} is outside {allowed}", "batch"))
        return out

    def violations(self, grid: Grid, batch: int, redundant: int, replicas: int | None = None
                   ) -> list[Violation]:
        """Every structural rule and restriction the shape breaks; empty iff it is in the space."""
        return (rules.violations(self.shape(grid, batch, redundant))
                + self.restriction_violations(grid, batch, replicas))

    # -- enumeration ----------------------------------------------------------------------------

    def q_range(self, grid: Grid) -> tuple[int, int] | None:
        """Sequences per attention-DP rank the space allows for ``grid`` (batch ``= dp · q``):
        inside the workload's batch range and below the prefill-queue limit; None if none."""
        lo = -(-self.bmin // grid.dp)
        hi = min(self.bmax // grid.dp, grid.pp * self.s_stable)
        return (lo, hi) if lo <= hi else None

    @cached_property
    def _tps(self) -> list[int]:
        return [t for t in divisors(self.model.attention.num_heads) if t <= MAX_GPUS]

    def inner(self, n: int) -> list[Grid]:
        """Every stage grid of ``n`` GPUs (pp = 1) whose degrees no grid rule or restriction
        rejects, before the batch: the attention grid ``tp·cp·dp = n`` and every MoE folding
        ``etp·ep·edp = n``."""
        hit = self._inner.get(n)
        if hit is not None:
            return hit
        out: list[Grid] = []
        if self.stage_max is not None and n > self.stage_max:
            self._inner[n] = out
            return out
        m, s = self.model, self.search
        width = m.expert_ffn_width
        for tp in self._tps:
            if n % tp or not self.allowed("tp", tp):
                continue
            for cp in divisors(n // tp):
                if (self.cp_limit and cp > self.cp_limit) or not self.allowed("cp", cp):
                    continue
                dp = n // (tp * cp)
                if dp > self.bmax or (s.max_dp and dp > s.max_dp) or not self.allowed("dp", dp):
                    continue
                # rules.tp_within_node, ahead of the expert loops it does not depend on
                if not s.tp_cross_node and not rules.fits_node(
                        tp * cp, self.instance.hardware.gpus_per_node):
                    continue
                for etp in divisors(n):
                    if m.moe_layers and width % etp:
                        continue
                    if not s.tp_cross_node and etp > self.instance.hardware.gpus_per_node:
                        break
                    for ep in divisors(n // etp):
                        if not m.moe_layers and etp * ep > 1:
                            continue
                        g = Grid(tp, cp, dp, ep, etp, n // (etp * ep), 1)
                        if not all(self.allowed(k, v) for k, v in
                                   (("etp", g.etp), ("ep", g.ep), ("edp", g.edp))):
                            continue
                        shape = self.shape(g, dp, self.redundant(ep))
                        if rules.violations(shape, rules.GRID_RULES):
                            continue
                        out.append(g)
        self._inner[n] = out
        return out

    def grids(self, gpus_per_instance: int) -> list[Grid]:
        """Every grid of the space with exactly ``gpus_per_instance`` GPUs, batch aside."""
        out = []
        for pp in divisors(gpus_per_instance):
            if pp > self.max_pp or not self.allowed("pp", pp):
                continue
            for g in self.inner(gpus_per_instance // pp):
                grid = g._replace(pp=pp)
                if self.q_range(grid) is None:
                    continue
                # rules.PP_RULES: inner() judged the stage at pp = 1
                if pp > 1 and rules.violations(self.shape(grid, grid.dp, self.redundant(grid.ep)),
                                               rules.PP_RULES):
                    continue
                out.append(grid)
        return out

    @cached_property
    def _factors(self) -> list[tuple[int, int, int, int]]:
        """``(tp, cp, pp, dp_max)`` for every tp, cp, pp the restrictions and the node rule
        allow: a grid's size is ``tp·cp·dp·pp`` with ``dp <= dp_max``."""
        s, gpn = self.search, self.instance.hardware.gpus_per_node
        dp_max = min(self.bmax, s.max_dp or MAX_GPUS)
        out = []
        for tp in self._tps:
            if not self.allowed("tp", tp):
                continue
            for cp in range(1, MAX_GPUS // tp + 1):
                if (self.cp_limit and cp > self.cp_limit) or not self.allowed("cp", cp):
                    continue
                if not s.tp_cross_node and (tp * cp > gpn or gpn % (tp * cp)):
                    if tp * cp > gpn:
                        break
                    continue
                for pp in range(1, self.max_pp + 1):
                    if self.allowed("pp", pp):
                        out.append((tp, cp, pp, dp_max))
        return out

    def grids_between(self, lo: int, hi: int) -> Iterator[Grid]:
        """Grids with ``lo < gpus_per_instance <= hi``, in increasing order of it."""
        n = self.next_size_above(lo, hi)
        while n is not None:
            yield from self.grids(n)
            n = self.next_size_above(n, hi)

    def next_size_above(self, lo: int, limit: int = MAX_GPUS,
                        exclude: frozenset[tuple[int, int]] = frozenset()) -> int | None:
        """The smallest ``gpus_per_instance`` above ``lo`` (at most ``limit``) with any grid
        whose ``(tp, cp)`` is not in ``exclude``."""
        limit = min(limit, MAX_GPUS)
        if self.stage_max is not None:
            limit = min(limit, self.stage_max * self.max_pp)
        factors = [f for f in self._factors if (f[0], f[1]) not in exclude]
        while lo < limit:
            sizes = [tp * cp * pp * (lo // (tp * cp * pp) + 1)
                     for tp, cp, pp, dp_max in factors
                     if lo // (tp * cp * pp) + 1 <= dp_max]
            n = min((x for x in sizes if x <= limit), default=None)
            if n is None:
                return None
            if any((g.tp, g.cp) not in exclude for g in self.grids(n)):
                return n
            lo = n
        return None
