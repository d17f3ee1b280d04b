"""Exact layer-to-stage partitions of one candidate when only one of its stage times is bounded.

Every stage cost here — average step, full step, memory — only grows when a stage gains a layer,
and the first and last stages carry fixed extras. So whether *some* partition into ``pp``
contiguous non-empty stages keeps every stage under limits ``(m, f, budget)`` is decided exactly
by the greedy that extends each stage as far as the limits allow (an exchange argument: its
``k``-th boundary is never left of any feasible partition's, so if any partition fits, its last
stage is a suffix of that partition's last stage and fits too). Bisection on ``m`` then gives the
least slowest stage, exactly. docs/solver.md has the proof; the planner uses these as exact
answers where the TTFT target does not couple the two stage times, and as CP-SAT hints where it
does.
"""

from __future__ import annotations

from solver.planner.candidates import INF, Candidate


def greedy_cuts(c: Candidate, q: int, m_lim: int = INF, f_lim: int = INF) -> list[int] | None:
    """Stage starts of a partition with every stage's average step ``<= m_lim``, full step
    ``<= f_lim`` and memory within the budget at ``q`` sequences per rank; None if none exists."""
    L, pp, budget = c.num_layers, c.pp, c.gc.budget

    def fits(a: int, b: int, st: int) -> bool:
        return (c.stage_avg(a, b, st) <= m_lim and c.stage_full(a, b, st) <= f_lim
                and c.stage_mem(a, b, st, q) <= budget)

    cuts = [0]
    a = 0
    for st in range(pp - 1):
        last_end = L - (pp - 1 - st)  # leave one layer for each later stage
        if not fits(a, a + 1, st):
            return None
        lo, hi = a + 1, last_end  # largest b in [lo, hi] with fits(a, b): bisection (monotone)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(a, mid, st):
                lo = mid
            else:
                hi = mid - 1
        cuts.append(lo)
        a = lo
    return cuts if fits(a, L, pp - 1) else None


def bounds_of(c: Candidate, cuts: list[int]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` layer ranges of the stages starting at ``cuts``."""
    edges = [*cuts, c.num_layers]
    return [(edges[k], edges[k + 1] - 1) for k in range(c.pp)]


def least_slowest(c: Candidate, q: int, m_cap: int = INF, f_lim: int = INF
                  ) -> tuple[int, list[int]] | None:
    """The least slowest average stage (at most ``m_cap``) over partitions that fit memory at
    ``q`` with every full step ``<= f_lim``, and one such partition; None if there is none."""
    hi = min(m_cap, int(c.avg_prefix[-1]) + c.first_avg + c.last_avg)  # no stage exceeds all
    lo = c.slowest_lb
    if lo > hi:
        return None
    best = greedy_cuts(c, q, hi, f_lim)
    if best is None:
        return None
    hi = c.times(best)[0]
    while lo < hi:
        mid = (lo + hi) // 2
        cuts = greedy_cuts(c, q, mid, f_lim)
        if cuts is None:
            lo = mid + 1
        else:
            best, hi = cuts, c.times(cuts)[0]
    return hi, best


def least_full(c: Candidate, q: int, m_lim: int = INF) -> tuple[int, list[int]] | None:
    """The least slowest full step over partitions that fit memory at ``q`` with every average
    step ``<= m_lim``; None if there is none."""
    best = greedy_cuts(c, q, m_lim, INF)
    if best is None:
        return None
    lo, hi = c.full_lb, c.times(best)[1]
    while lo < hi:
        mid = (lo + hi) // 2
        cuts = greedy_cuts(c, q, m_lim, mid)
        if cuts is None:
            lo = mid + 1
        else:
            best, hi = cuts, c.times(cuts)[1]
    return hi, best
