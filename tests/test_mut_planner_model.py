"""The planner's CP-SAT model (solver/planner/model.py) against a brute force over its choices.

A candidate here is made by hand: integer step times, bytes and caps chosen so that every
constraint of the model binds somewhere, and the planner's own search (which reaches the CP-SAT
model only when a TTFT target couples the stage times) is not needed. For every choice of stage
starts, sequences per rank ``q`` and replica count ``r`` the test decides feasibility with plain
arithmetic from docs/solver.md (stage sums, ``max(q·KV per sequence, one maximum-context
sequence)`` memory, TPOT = pp·(slowest + hop + overhead), the round of a TTFT, the rate per GPU
and the total rate) and asks the model the same question with that choice fixed. Then the
optimisations the search runs: fewest GPUs over several candidates, and with ``q`` and the
replicas fixed, the least slowest stage and the least round. Finally ``hint`` and ``extract``.

The two-stage candidate ``A`` (pp 2, dp 2: 4 GPUs per instance), layers 0-3:

- average step per layer 100, 300, 200, 400 ns; embedding 50 on the first stage, LM head 70 on
  the last; so the stage starts (0, 1), (0, 2), (0, 3) give stages 150 | 970, 450 | 670 and
  650 | 470: slowest 970, 670, 650;
- full-chunk step 1000, 800, 3000, 500 with 20 and 30 at the ends: slowest full 4330, 3530,
  4820;
- hop 10 ns (15 with a full chunk), overhead 5: TPOT = 2·(slowest + 15), a TTFT round =
  full + 20 + (slowest + 15): (0, 2) → 4235, (0, 3) → 5505;
- weights 10, 40, 30, 20 bytes, KV per sequence 1, 2, 3, 4, one maximum-context sequence 5
  each, 100 every stage, 5 more on the first and 6 on the last, budget 200: (0, 1) never fits
  (its last stage holds 90 + max(9q, 15) + 106 > 200), (0, 2) fits every q up to 4
  (50 + 7·4 + 106 = 184), (0, 3) fits q ≤ 2 only (its first stage 80 + max(6q, 15) + 105:
  200 at q = 2, where the maximum-context sequence binds, 203 at q = 3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pytest
from ortools.sat.python import cp_model

from solver.planner.candidates import INF, Candidate, Caps, GridCost
from solver.planner.goals import Goals
from solver.planner.model import Choice, PlannerModel
from solver.schema import Grid

pytestmark = pytest.mark.unit

NS = 1_000_000_000


@dataclass(frozen=True)
class Shape:
    """A hand-made candidate in plain numbers (one value of ``s``)."""

    pp: int
    dp: int
    avg: tuple[int, ...]
    full: tuple[int, ...]
    weight: tuple[int, ...]
    kv_seq: tuple[int, ...]
    kv_max: tuple[int, ...]
    first: tuple[int, int] = (50, 20)  # embedding: average step, full step
    last: tuple[int, int] = (70, 30)  # LM head
    hop: tuple[int, int] = (10, 15)
    mem: tuple[int, int, int] = (5, 6, 100)  # first stage, last stage, every stage
    overhead: int = 5
    budget: int = 200

    @property
    def layers(self) -> int:
        return len(self.avg)

    @property
    def gpi(self) -> int:
        return self.pp * self.dp

    def candidate(self, caps: Caps) -> Candidate:
        one = np.array([0], dtype=np.int64)
        col = lambda xs: np.array(xs, dtype=np.int64).reshape(-1, 1)  # noqa: E731
        arr = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
        gc = GridCost(
            grid=Grid(tp=1, cp=1, dp=self.dp, ep=1, etp=1, edp=self.dp, pp=self.pp),
            redundant=0, q_lo=caps.q_lo, q_hi=caps.q_hi, avg=col(self.avg),
            full=col(self.full), weight=np.array(self.weight, dtype=np.int64),
            kv_seq=np.array(self.kv_seq, dtype=np.int64),
            kv_max=np.array(self.kv_max, dtype=np.int64),
            first_avg=arr(self.first[0]), last_avg=arr(self.last[0]),
            first_full=arr(self.first[1]), last_full=arr(self.last[1]),
            hop_avg=arr(self.hop[0]) if self.pp > 1 else one,
            hop_full=arr(self.hop[1]) if self.pp > 1 else one,
            mem_first=self.mem[0], mem_last=arr(self.mem[1]), mem_every=self.mem[2],
            overhead=self.overhead, budget=self.budget, token_budget=512,
            workload=(128, 256, 64))
        c = Candidate(gc, 1)
        c.caps = caps
        return c

    # -- the brute force ------------------------------------------------------------------------

    def stages(self, cuts: tuple[int, ...]) -> list[tuple[int, int]]:
        edges = [*cuts, self.layers]
        return [(edges[k], edges[k + 1]) for k in range(self.pp)]

    def valid_cuts(self, cuts: tuple[int, ...]) -> bool:
        return len(cuts) == self.pp and cuts[0] == 0 and all(
            a < b for a, b in self.stages(cuts))

    def times(self, cuts: tuple[int, ...]) -> tuple[int, int]:
        """(slowest average stage, slowest full stage)."""
        avg, full = [], []
        for k, (a, b) in enumerate(self.stages(cuts)):
            ends = (k == 0, k == self.pp - 1)
            avg.append(sum(self.avg[a:b]) + ends[0] * self.first[0] + ends[1] * self.last[0])
            full.append(sum(self.full[a:b]) + ends[0] * self.first[1] + ends[1] * self.last[1])
        return max(avg), max(full)

    def fits(self, cuts: tuple[int, ...], q: int) -> bool:
        for k, (a, b) in enumerate(self.stages(cuts)):
            fixed = self.mem[2] + (k == 0) * self.mem[0] + (k == self.pp - 1) * self.mem[1]
            kv = max(q * sum(self.kv_seq[a:b]), sum(self.kv_max[a:b]))
            if sum(self.weight[a:b]) + kv + fixed > self.budget:
                return False
        return True

    def tpot(self, slowest: int) -> int:
        hop = self.hop[0] if self.pp > 1 else 0
        return self.pp * (slowest + hop + self.overhead)

    def round(self, slowest_full: int, slowest: int) -> int:
        if self.pp == 1:
            return slowest_full + self.overhead
        return (slowest_full + self.hop[1] + self.overhead
                + (self.pp - 1) * (slowest + self.hop[0] + self.overhead))

    def feasible(self, caps: Caps, goals: Goals, forbidden: tuple[int, ...],
                 cuts: tuple[int, ...], q: int, r: int) -> bool:
        if not self.valid_cuts(cuts) or not caps.q_lo <= q <= caps.q_hi:
            return False
        if not caps.r_min <= r <= caps.r_max or r in forbidden:
            return False
        if not self.fits(cuts, q):
            return False
        m, f = self.times(cuts)
        tpot = self.tpot(m)
        batch = self.dp * q
        return (m <= caps.slowest_cap
                and (caps.round_cap is None or self.round(f, m) <= caps.round_cap)
                and (goals.min_rate_per_gpu is None
                     or batch * NS >= Fraction(goals.min_rate_per_gpu) * self.gpi * tpot)
                and (caps.rate_total is None
                     or r * batch * NS >= Fraction(caps.rate_total) * tpot)
                and (goals.max_gpus is None or self.gpi * r <= goals.max_gpus))

    def all_cuts(self) -> list[tuple[int, ...]]:
        return [(0, *rest) for rest in itertools.combinations(range(1, self.layers), self.pp - 1)]


A = Shape(pp=2, dp=2, avg=(100, 300, 200, 400), full=(1000, 800, 3000, 500),
          weight=(10, 40, 30, 20), kv_seq=(1, 2, 3, 4), kv_max=(5, 5, 5, 5))
#: One stage of the same layers on dp 1 (1 GPU): 1000 + 120 on average, 5300 + 50 full; memory
#: 100 + max(10q, 20) + 111 against a budget of 240: q ≤ 2.
SINGLE = Shape(pp=1, dp=1, avg=A.avg, full=A.full, weight=A.weight, kv_seq=A.kv_seq,
               kv_max=A.kv_max, budget=231)
#: Three stages of four layers: (0, 1, 2), (0, 1, 3), (0, 2, 3) are the partitions.
THREE = Shape(pp=3, dp=1, avg=A.avg, full=A.full, weight=A.weight, kv_seq=A.kv_seq,
              kv_max=A.kv_max, budget=400)


#: The slowest-stage variables range up to every layer plus both ends (no stage is slower).
#: A heavy last layer and a light first one: the start (0, 1) gives stages 60 | 1170 on
#: average (the whole instance is 1230) and 30 | 5230 full (of 5260).
LAST_HEAVY = Shape(pp=2, dp=1, avg=(10, 100, 100, 900), full=(10, 100, 100, 5000),
                   weight=A.weight, kv_seq=A.kv_seq, kv_max=A.kv_max, budget=10_000)
#: The mirror image: the start (0, 3) gives 1150 | 80 on average and 5220 | 40 full.
FIRST_HEAVY = Shape(pp=2, dp=1, avg=(900, 100, 100, 10), full=(5000, 100, 100, 10),
                    weight=A.weight, kv_seq=A.kv_seq, kv_max=A.kv_max, budget=10_000)


def caps(q: tuple[int, int] = (1, 4), r: tuple[int, int] = (1, 1), *, slowest: int = INF,
         round_cap: int | None = None, rate_total: float | None = None) -> Caps:
    return Caps(q_lo=q[0], q_hi=q[1], slowest_cap=slowest, round_cap=round_cap, r_min=r[0],
                r_max=r[1], rate_total=rate_total, gpu_lb=0)


def solve(pm: PlannerModel) -> tuple[cp_model.CpSolver, int]:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10.0
    return solver, solver.solve(pm.model)


def model_accepts(shape: Shape, cap: Caps, goals: Goals, forbidden: tuple[int, ...],
                  cuts: tuple[int, ...], q: int, r: int) -> bool:
    pm = PlannerModel([shape.candidate(cap)], goals, forbidden)
    v = pm.vars[0]
    pm.model.add(v.q == q)
    pm.model.add(v.replicas == r)
    for k in range(1, shape.pp):
        pm.model.add(v.stage_start[k] == cuts[k])
    _, status = solve(pm)
    assert status in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
    return status == cp_model.OPTIMAL


def check_every_choice(shape: Shape, cap: Caps, goals: Goals | None = None,
                       forbidden: tuple[int, ...] = ()) -> set:
    """The model accepts exactly the choices the brute force calls feasible (including stage
    starts, q and replica counts just outside their ranges); returns the feasible ones."""
    goals = goals or Goals()
    cuts_all = shape.all_cuts()
    qs = range(cap.q_lo - 1, cap.q_hi + 2)
    rs = range(0, cap.r_max + 2)
    feasible = set()
    for cuts, q, r in itertools.product(cuts_all, qs, rs):
        want = shape.feasible(cap, goals, forbidden, cuts, q, r)
        if want:
            feasible.add((cuts, q, r))
        # outside the ranges only a sample: one partition
        if (q not in range(cap.q_lo, cap.q_hi + 1) or r not in range(cap.r_min, cap.r_max + 1)) \
                and cuts != cuts_all[-1]:
            continue
        assert model_accepts(shape, cap, goals, forbidden, cuts, q, r) == want, (cuts, q, r)
    return feasible


# -- feasibility, constraint by constraint ------------------------------------------------------


def test_memory_alone() -> None:
    got = check_every_choice(A, caps())
    assert {(c, q) for c, q, _ in got} == {((0, 2), q) for q in (1, 2, 3, 4)} | {
        ((0, 3), 1), ((0, 3), 2)}


def test_one_maximum_context_sequence_must_fit_too() -> None:
    """Budget 199: (0, 3)'s first stage holds 80 + 6q + 105 ≤ 199 for q ≤ 2, but a
    maximum-context sequence (15 bytes) makes it 200."""
    got = check_every_choice(replace(A, budget=199), caps())
    assert {(c, q) for c, q, _ in got} == {((0, 2), q) for q in (1, 2, 3, 4)}


@pytest.mark.parametrize("shape", [LAST_HEAVY, FIRST_HEAVY], ids=["last-heavy", "first-heavy"])
def test_a_stage_may_take_nearly_the_whole_instance(shape: Shape) -> None:
    got = check_every_choice(shape, caps(q=(1, 2)))
    assert {c for c, _, _ in got} == {(0, 1), (0, 2), (0, 3)}


def test_tpot_cap_on_the_slowest_stage() -> None:
    """A slowest-stage cap of 660 (TPOT 1350) leaves (0, 3) only; at exactly 670 both."""
    got = check_every_choice(A, caps(slowest=660))
    assert {c for c, _, _ in got} == {(0, 3)}
    assert {c for c, _, _ in check_every_choice(A, caps(slowest=670))} == {(0, 2), (0, 3)}


def test_ttft_round_cap() -> None:
    """Round cap 4235: (0, 2) exactly (3530 + 20 + 670 + 15), not (0, 3) (5505)."""
    got = check_every_choice(A, caps(round_cap=4235))
    assert {c for c, _, _ in got} == {(0, 2)}
    assert not check_every_choice(A, caps(round_cap=4234))


def test_rate_per_gpu_by_q() -> None:
    """1e6 tokens/s per GPU: (0, 2) needs 2q·1e9 ≥ 1e6·4·1370, q ≥ 3 (2.74); (0, 3) would need
    q ≥ 3 (2.66) where it does not fit."""
    got = check_every_choice(A, caps(), Goals(min_rate_per_gpu=1e6))
    assert got == {((0, 2), 3, 1), ((0, 2), 4, 1)}


def test_rate_per_gpu_at_its_boundary() -> None:
    """A rate per GPU a hair below 8e9 / 5480 (q = 4 on (0, 2): 2·4 sequences per TPOT of
    2·(670 + 15) ns on 4 GPUs) is met by exactly that plan; (0, 3) fits q ≤ 2 only."""
    rate = 8e9 / 5480 * (1 - 1e-12)
    got = check_every_choice(A, caps(), Goals(min_rate_per_gpu=rate))
    assert got == {((0, 2), 4, 1)}


def test_total_rate_at_its_boundary() -> None:
    """3 replicas of q = 4 on (0, 2) deliver 3·8e9 / 1370 tokens/s: a total a hair below that
    needs exactly 3, and 2 are not enough."""
    rate = 24e9 / 1370 * (1 - 1e-12)
    got = check_every_choice(A, caps(r=(1, 3), rate_total=rate))
    assert got == {((0, 2), 4, 3)}


def test_total_rate_sets_the_replicas() -> None:
    """1.2e7 tokens/s in total with 1-4 replicas: (0, 2) at q = 4 needs ⌈1.2e7·1370/8e9⌉ = 3,
    at q = 3 ⌈2.74⌉ = 3, at q = 2 5 (too many); (0, 3) at q = 2 ⌈1.2e7·1330/4e9⌉ = 4."""
    cap = caps(r=(1, 4), rate_total=1.2e7)
    got = check_every_choice(A, cap)
    assert {(c, q, min(r for c2, q2, r in got if (c2, q2) == (c, q))) for c, q, _ in got} == {
        ((0, 2), 4, 3), ((0, 2), 3, 3), ((0, 3), 2, 4)}


def test_forbidden_replicas_and_max_gpus() -> None:
    cap = caps(r=(1, 4), rate_total=1.2e7)
    got = check_every_choice(A, cap, Goals(max_gpus=12), forbidden=(2,))
    assert got == {((0, 2), 4, 3), ((0, 2), 3, 3)}  # 4 replicas would be 16 GPUs
    assert check_every_choice(A, cap, Goals(max_gpus=12), forbidden=(3,)) == set()


def test_three_stages_are_contiguous_and_non_empty() -> None:
    got = check_every_choice(THREE, caps(q=(1, 2)))
    assert {c for c, _, _ in got} == {(0, 1, 2), (0, 1, 3), (0, 2, 3)}
    for cuts in [(0, 2, 2), (0, 1, 1), (0, 0, 2), (0, 3, 3)]:  # an empty stage
        assert not model_accepts(THREE, caps(q=(1, 2)), Goals(), (), cuts, 1, 1), cuts


def test_single_stage_takes_every_layer() -> None:
    got = check_every_choice(SINGLE, caps())
    assert got == {((0,), 1, 1), ((0,), 2, 1)}


# -- the optimisations the search runs -------------------------------------------------------------


def _extracted(pm: PlannerModel, solver: cp_model.CpSolver) -> Choice:
    choice = pm.extract(solver)
    assert all(isinstance(x, int) for x in (*choice.cuts, choice.q, choice.replicas))
    return choice


def test_fewest_gpus_over_candidates() -> None:
    """A at a total rate of 1.2e7 needs 3 replicas (12 GPUs); SINGLE (1 GPU, q ≤ 2, TPOT
    1·(1120 + 5)) needs ⌈1.2e7·1125/2e9⌉ = 7 at q = 2: 7 GPUs, the optimum; with at most 6
    replicas allowed, A's 12."""
    goals = Goals()
    a = A.candidate(caps(r=(1, 4), rate_total=1.2e7))
    for r_max, gpus, shape in [(8, 7, SINGLE), (6, 12, A)]:
        single = SINGLE.candidate(caps(q=(1, 3), r=(1, r_max), rate_total=1.2e7))
        pm = PlannerModel([a, single], goals, ())
        pm.model.minimize(pm.gpus_expr())
        solver, status = solve(pm)
        assert status == cp_model.OPTIMAL and solver.objective_value == gpus
        choice = _extracted(pm, solver)
        assert choice.gpus == gpus and choice.cand.gpi == shape.gpi
        assert shape.feasible(choice.cand.caps, goals, (), choice.cuts, choice.q,
                              choice.replicas)
        # the unselected candidate is pinned: its q at its lowest, no replicas
        other = pm.vars[1] if choice.cand is a else pm.vars[0]
        assert solver.value(other.replicas) == 0 and solver.value(other.q) == other.cand.caps.q_lo


def test_max_gpus_applies_to_the_selected_candidate() -> None:
    a = A.candidate(caps(r=(1, 4), rate_total=1.2e7))
    single = SINGLE.candidate(caps(q=(1, 3), r=(1, 8), rate_total=1.2e7))
    pm = PlannerModel([a, single], Goals(max_gpus=6), ())
    pm.model.minimize(pm.gpus_expr())
    _, status = solve(pm)
    assert status == cp_model.INFEASIBLE


def test_unselected_candidates_are_pinned() -> None:
    """Symmetry breaking: with SINGLE selected, A's q and stage starts cannot move (maximising
    them leaves q_lo and starts (0, 1))."""
    # A with a total-rate target and a single replica count (its replica table has one
    # column): pinned too, not in the way
    a = A.candidate(caps(q=(2, 4), r=(3, 3), rate_total=1.0))
    single = SINGLE.candidate(caps())
    three = THREE.candidate(caps(q=(1, 2)))
    pm = PlannerModel([a, single, three], Goals(), ())
    va, vs, vt = pm.vars
    pm.model.add(vs.selected == 1)
    pm.model.maximize(va.q + va.stage_start[1] + va.replicas + vt.q + vt.stage_start[1]
                      + vt.stage_start[2] + vt.replicas)
    solver, status = solve(pm)
    assert status == cp_model.OPTIMAL
    assert solver.objective_value == 2 + 1 + 0 + 1 + 1 + 2 + 0
    assert not solver.boolean_value(va.selected) and not solver.boolean_value(vt.selected)


@pytest.mark.parametrize(("q", "objective", "cuts", "value"), [
    (2, "slowest", (0, 3), 650),
    (3, "slowest", (0, 2), 670),
    (2, "round", (0, 2), 3530 + 670),
    (1, "round", (0, 2), 3530 + 670),
])
def test_fixed_q_and_replicas_minimise_a_stage_time(q: int, objective: str, cuts: tuple,
                                                    value: int) -> None:
    """What the tie-breaks ask of one candidate: with q and the replicas fixed, the least
    slowest stage, or the least round (full + (pp − 1)·slowest; its constant part aside)."""
    c = A.candidate(caps(q=(1, 4), r=(1, 3)))
    pm = PlannerModel([c], Goals(), (), q=q, replicas=2)
    pm.model.minimize(pm.slowest_expr() if objective == "slowest" else pm.round_expr())
    solver, status = solve(pm)
    assert status == cp_model.OPTIMAL and solver.objective_value == value
    choice = _extracted(pm, solver)
    assert (choice.cuts, choice.q, choice.replicas) == (cuts, q, 2)
    assert choice.gpus == 8 and choice.times == A.times(cuts)


def test_fixed_q_and_replicas_override_the_caps() -> None:
    """The tie-breaks fix q (inside the candidate's range) and the replica count they already
    know to work: the model takes them as given, 4 replicas above r_max included."""
    c = A.candidate(caps(q=(1, 4), r=(1, 3)))
    for q, r in [(4, 4), (2, 4), (3, 1)]:
        pm = PlannerModel([c], Goals(), (), q=q, replicas=r)
        solver, status = solve(pm)
        assert status == cp_model.OPTIMAL, (q, r)
        assert (solver.value(pm.vars[0].q), solver.value(pm.vars[0].replicas)) == (q, r)


def test_the_slowest_stage_domain_reaches_the_whole_instance() -> None:
    """One stage: its step is every layer plus both ends, the domain's top (1120, 5350)."""
    c = SINGLE.candidate(caps())
    pm = PlannerModel([c], Goals(), ())
    pm.model.maximize(pm.slowest_expr() * 10_000 + pm.vars[0].slowest_full)
    solver, status = solve(pm)
    assert status == cp_model.OPTIMAL
    assert (solver.value(pm.vars[0].slowest), solver.value(pm.vars[0].slowest_full)) == (
        1120, 5350)
    pm = PlannerModel([c], Goals(), ())
    pm.model.minimize(pm.slowest_expr() * 10_000 + pm.vars[0].slowest_full)
    solver, _ = solve(pm)
    assert (solver.value(pm.vars[0].slowest), solver.value(pm.vars[0].slowest_full)) == (
        1120, 5350)


# -- hints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pick", [0, 1, 2])
def test_a_hint_is_complete_and_feasible(pick: int) -> None:
    """Every variable hinted: solving with the variables fixed to the hint succeeds and gives
    the hinted choice back."""
    a = A.candidate(caps(r=(1, 4), rate_total=1.2e7))
    single = SINGLE.candidate(caps(q=(1, 3), r=(1, 8), rate_total=1.2e7))
    three = THREE.candidate(caps(q=(1, 2), r=(1, 9), rate_total=1.2e7))
    cands = [a, single, three]
    hinted = [Choice(a, (0, 2), 3, 4), Choice(single, (0,), 2, 8),
              Choice(three, (0, 2, 3), 2, 9)][pick]
    pm = PlannerModel(cands, Goals(), ())
    pm.model.minimize(pm.gpus_expr())
    pm.hint(hinted)
    pm.hint(hinted)  # hinting twice replaces the first hint
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.fix_variables_to_their_hinted_value = True
    status = solver.solve(pm.model)
    assert status == cp_model.OPTIMAL
    got = pm.extract(solver)
    assert (got.cand, got.cuts, got.q, got.replicas) == (hinted.cand, hinted.cuts, hinted.q,
                                                         hinted.replicas)
    # complete: every decision variable of every candidate carries a value (the chosen
    # candidate's stage times too); the others are pinned as symmetry breaking pins them
    hints = dict(zip(pm.model.proto.solution_hint.vars, pm.model.proto.solution_hint.values,
                     strict=True))
    want = {}
    for v in pm.vars:
        chosen = v.cand is hinted.cand
        want[v.selected.index] = int(chosen)
        want[v.q.index] = hinted.q if chosen else v.cand.caps.q_lo
        want[v.replicas.index] = hinted.replicas if chosen else 0
        for k in range(1, v.cand.pp):
            want[v.stage_start[k].index] = hinted.cuts[k] if chosen else k
        if chosen:
            m, f = hinted.cand.times(list(hinted.cuts))
            want[v.slowest.index], want[v.slowest_full.index] = m, f
    assert hints == want
    m, f = hinted.cand.times(list(hinted.cuts))
    v = pm.vars[pick]
    assert (solver.value(v.slowest), solver.value(v.slowest_full)) == (max(m, v.cand.slowest_lb),
                                                                       max(f, v.cand.full_lb))


def test_a_stage_without_kv_per_sequence() -> None:
    """Layers whose KV cache does not grow with the sequences a rank serves (0 bytes per
    sequence at the mean context, as tests of pareto_units also allow): a stage of them holds
    one maximum-context sequence only, whatever q."""
    shape = replace(A, kv_seq=(0, 0, 3, 4))
    got = check_every_choice(shape, caps())
    # (0, 2): the first stage holds 50 + max(0, 10) + 105 = 165 for every q
    assert {q for c, q, _ in got if c == (0, 2)} == {1, 2, 3, 4}
