"""The CP-SAT model over candidates: which candidate, which stage boundaries, which batch, how
many replicas.

Data → variables → constraints → objective, per candidate ``t`` (a grid at one ``s``, see
:mod:`solver.planner.candidates`), in a :class:`CandidateVars` container:

- ``selected``: this candidate is the deployment (exactly one is);
- ``stage_start[k]``: first layer of stage ``k`` (``0`` and ``L`` fixed at the ends), strictly
  increasing: contiguous, non-empty stages; a stage's sums are differences of the candidate's
  prefix sums read with ``add_element``;
- ``q``: sequences per attention-DP rank (batch ``= dp·q``), within the candidate's bucket;
- ``slowest`` / ``slowest_full``: the slowest stage's average step / full-chunk step (ns);
- ``replicas``: instances (0 when not selected).

Constraints, each enforced only if ``selected``: stage memory (weights + ``max(q·KV per
sequence, one maximum-context sequence)`` + extras ``<=`` the engine's budget, the product ``q·KV``
by ``add_multiplication_equality``); every stage's steps under ``slowest``/``slowest_full``; TPOT
and TTFT as caps on them (:mod:`solver.timing`'s exact inverses); the rate per GPU as a cap per
``q`` (``add_element``); the replicas a total-rate target needs as a cap per ``(q, replicas)``
(``add_element`` on a flattened table). Symmetry breaking: an unselected candidate's variables are
pinned. Objective: total GPUs; the tie-breaks use the same container with ``q`` and ``replicas``
fixed (:mod:`solver.planner.search`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from solver import timing
from solver.planner.candidates import Candidate
from solver.planner.goals import Goals


@dataclass(frozen=True)
class Choice:
    """A candidate with everything decided: stage starts, ``q`` and replicas."""

    cand: Candidate
    cuts: tuple[int, ...]
    q: int
    replicas: int

    @property
    def gpus(self) -> int:
        return self.cand.gpi * self.replicas

    @property
    def times(self) -> tuple[int, int]:
        return self.cand.times(list(self.cuts))


@dataclass
class CandidateVars:
    """The decision variables of one candidate."""

    cand: Candidate
    selected: cp_model.IntVar
    q: cp_model.IntVar
    stage_start: list  # IntVar for k = 1..pp-1, ints at both ends
    slowest: cp_model.IntVar
    slowest_full: cp_model.IntVar
    replicas: cp_model.IntVar


def _as_int(x) -> int:
    return int(x)


class PlannerModel:
    """CP-SAT variables and constraints for a list of bounded candidates."""

    def __init__(self, cands: list[Candidate], goals: Goals, forbidden: tuple[int, ...],
                 *, q: int | None = None, replicas: int | None = None):
        self.model = cp_model.CpModel()
        self.goals = goals
        self.vars: list[CandidateVars] = [
            self._candidate(t, c, forbidden, q, replicas) for t, c in enumerate(cands)]
        self.model.add_exactly_one(v.selected for v in self.vars)
        if goals.max_gpus is not None:
            self.model.add(self.gpus_expr() <= goals.max_gpus)

    # -- one candidate --------------------------------------------------------------------------

    def _candidate(self, t: int, c: Candidate, forbidden: tuple[int, ...], fix_q: int | None,
                   fix_r: int | None) -> CandidateVars:
        m, caps = self.model, c.caps
        assert caps is not None
        sel = m.new_bool_var(f"selected[{t}]")
        q_lo, q_hi = (fix_q, fix_q) if fix_q is not None else (caps.q_lo, caps.q_hi)
        q = m.new_int_var(q_lo, q_hi, f"q[{t}]")
        # No stage is slower than all layers together: a finite domain for the cap INF.
        slowest_hi = min(caps.slowest_cap, int(c.avg_prefix[-1]) + c.first_avg + c.last_avg)
        slowest = m.new_int_var(c.slowest_lb, max(c.slowest_lb, slowest_hi), f"slowest[{t}]")
        full_hi = int(c.full_prefix[-1]) + c.first_full + c.last_full
        slowest_full = m.new_int_var(c.full_lb, max(c.full_lb, full_hi), f"slowest_full[{t}]")
        starts = self._stages(t, c, sel, q, slowest, slowest_full)
        replicas = self._replicas(t, c, sel, q, q_lo, q_hi, slowest, forbidden, fix_r)
        self._caps(t, c, sel, q, q_lo, q_hi, slowest, slowest_full)
        # Symmetry breaking: an unselected candidate's choices are irrelevant; pin them.
        m.add(q == q_lo).only_enforce_if(~sel)
        for k in range(1, c.pp):
            m.add(starts[k] == k).only_enforce_if(~sel)
        return CandidateVars(c, sel, q, starts, slowest, slowest_full, replicas)

    def _stages(self, t: int, c: Candidate, sel, q, slowest, slowest_full) -> list:
        m, L, pp, gc = self.model, c.num_layers, c.pp, c.gc
        starts: list = [0]
        for k in range(1, pp):
            starts.append(m.new_int_var(k, L - pp + k, f"stage_start[{t},{k}]"))
        starts.append(L)
        for k in range(1, pp - 1):
            m.add(starts[k] + 1 <= starts[k + 1])
        tables = {
            "avg": [int(x) for x in c.avg_prefix], "full": [int(x) for x in c.full_prefix],
            "w": [int(x) for x in gc.w_prefix], "kvs": [int(x) for x in gc.kvs_prefix],
            "kvm": [int(x) for x in gc.kvm_prefix],
        }
        at: dict[str, list] = {name: [0] for name in tables}
        for k in range(1, pp):
            for name, table in tables.items():
                values = table[k:L - pp + k + 1]
                var = m.new_int_var_from_domain(cp_model.Domain.from_values(values),
                                                f"{name}_at[{t},{k}]")
                m.add_element(starts[k], table, var)
                at[name].append(var)
        for name, table in tables.items():
            at[name].append(table[L])
        budget = gc.budget
        for st in range(pp):
            def diff(name: str, st: int = st):
                return at[name][st + 1] - at[name][st]
            m.add(diff("avg") + c.fixed_avg(st) <= slowest).only_enforce_if(sel)
            m.add(diff("full") + c.fixed_full(st) <= slowest_full).only_enforce_if(sel)
            kvs_total = tables["kvs"][L]
            kvs = m.new_int_var(0, kvs_total, f"kv_seq[{t},{st}]")
            m.add(kvs == diff("kvs"))
            kvq = m.new_int_var(0, kvs_total * max(1, c.caps.q_hi), f"kv_batch[{t},{st}]")
            m.add_multiplication_equality(kvq, [q, kvs])
            fixed = c.fixed_mem(st)
            m.add(diff("w") + kvq + fixed <= budget).only_enforce_if(sel)
            m.add(diff("w") + diff("kvm") + fixed <= budget).only_enforce_if(sel)
        # Redundant cuts (sums of the stage constraints over the first k stages and the rest):
        # they tie the boundaries to the slowest stage during propagation.
        fixed_avg = [c.fixed_avg(st) for st in range(pp)]
        for k in range(1, pp):
            m.add(at["avg"][k] + sum(fixed_avg[:k]) <= k * slowest).only_enforce_if(sel)
            m.add(tables["avg"][L] - at["avg"][k] + sum(fixed_avg[k:])
                  <= (pp - k) * slowest).only_enforce_if(sel)
        return starts

    def _caps(self, t: int, c: Candidate, sel, q, q_lo: int, q_hi: int, slowest,
              slowest_full) -> None:
        m, g, caps = self.model, self.goals, c.caps
        pp, hop, o = c.pp, c.hop_avg, c.gc.overhead
        if caps.round_cap is not None:
            const = c.round(0, 0)  # hops and overheads of one round
            m.add(slowest_full + (pp - 1) * slowest <= caps.round_cap - const
                  ).only_enforce_if(sel)
        if g.min_rate_per_gpu is not None:
            table = [timing.max_slowest_for_rate(c.batch(x), c.gpi, g.min_rate_per_gpu, pp, hop,
                                                 o) for x in range(q_lo, q_hi + 1)]
            cap = m.new_int_var(min(table), max(table), f"rate_cap[{t}]")
            m.add_element(q - q_lo, table, cap)
            m.add(slowest <= cap).only_enforce_if(sel)

    def _replicas(self, t: int, c: Candidate, sel, q, q_lo: int, q_hi: int, slowest,
                  forbidden: tuple[int, ...], fix_r: int | None):
        m, caps = self.model, c.caps
        r_min, r_max = (fix_r, fix_r) if fix_r is not None else (caps.r_min, caps.r_max)
        allowed = [r for r in range(r_min, r_max + 1) if r not in forbidden]
        replicas = m.new_int_var_from_domain(cp_model.Domain.from_values([0, *allowed]),
                                             f"replicas[{t}]")
        m.add(replicas == 0).only_enforce_if(~sel)
        m.add(replicas >= r_min).only_enforce_if(sel)
        rate = caps.rate_total
        if rate is None:
            return replicas
        nr = r_max - r_min + 1
        pp, hop, o = c.pp, c.hop_avg, c.gc.overhead
        table = [timing.max_slowest_for_replicas(r, c.batch(x), rate, pp, hop, o)
                 for x in range(q_lo, q_hi + 1) for r in range(r_min, r_max + 1)]
        r_off = m.new_int_var(0, nr - 1, f"replica_step[{t}]")
        m.add(r_off == replicas - r_min).only_enforce_if(sel)
        m.add(r_off == 0).only_enforce_if(~sel)
        cap = m.new_int_var(min(table), max(table), f"replica_cap[{t}]")
        m.add_element((q - q_lo) * nr + r_off, table, cap)
        m.add(slowest <= cap).only_enforce_if(sel)
        return replicas

    # -- expressions ----------------------------------------------------------------------------

    def gpus_expr(self):
        return sum(v.cand.gpi * v.replicas for v in self.vars)

    def round_expr(self):
        """The selected candidate's round time minus its constant part (TTFT tie-break on one
        candidate: TTFT is ``rounds · round``, monotone in it)."""
        return sum(v.slowest_full + (v.cand.pp - 1) * v.slowest for v in self.vars)

    def slowest_expr(self):
        return sum(v.slowest for v in self.vars)

    # -- answers --------------------------------------------------------------------------------

    def extract(self, solver: cp_model.CpSolver | cp_model.CpSolverSolutionCallback) -> Choice:
        v = next(v for v in self.vars if solver.boolean_value(v.selected))
        cuts = tuple(_as_int(solver.value(s)) if not isinstance(s, int) else s
                     for s in v.stage_start[:-1])
        return Choice(v.cand, cuts, _as_int(solver.value(v.q)),
                      _as_int(solver.value(v.replicas)))

    def hint(self, choice: Choice) -> None:
        """A complete hint: the chosen candidate selected with its values, the rest pinned."""
        self.model.clear_hints()
        for v in self.vars:
            chosen = v.cand is choice.cand
            self.model.add_hint(v.selected, chosen)
            c = v.cand
            q = choice.q if chosen else c.caps.q_lo
            self.model.add_hint(v.q, q)
            cuts = list(choice.cuts) if chosen else list(range(c.pp))
            for k in range(1, c.pp):
                self.model.add_hint(v.stage_start[k], cuts[k])
            if chosen:
                avg, full = c.times(cuts)
                self.model.add_hint(v.slowest, avg)
                self.model.add_hint(v.slowest_full, full)
            self.model.add_hint(v.replicas, choice.replicas if chosen else 0)
