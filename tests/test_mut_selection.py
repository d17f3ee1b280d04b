"""Which tests ``make mutation`` runs against the mutants of which module (docs/testing.md).

mutmut runs, for each mutant, every selected test that executed the mutated function. A solve
executes almost everything, so without a narrower choice a surviving mutant of the cost model
would wait for the planner-vs-reference comparison too. This module is loaded into those pytest
runs as a plugin (``-p tests.test_mut_selection`` in ``[tool.mutmut]``): in a run against a
mutant (``MUTANT_UNDER_TEST`` names it), tests outside its module's files are deselected.
Stats collection, the clean run and ``make test`` are untouched (in ``make test`` this file is
only a test module, whose hooks pytest does not call).

The tests below keep this table and ``[tool.mutmut]`` in pyproject.toml in step.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

#: Mutated module → the test files that exercise it within a ~1 hour run on 2 cores.
TESTS_BY_MODULE: dict[str, tuple[str, ...]] = {
    "solver.costmodel": (
        "tests/test_costmodel.py",
        "tests/test_oracle.py",
        "tests/test_mut_costmodel.py",
    ),
    "solver.verify": (
        "tests/test_costmodel.py",
        "tests/test_instances.py",
        "tests/test_mut_verify.py",
    ),
    "solver.placement": (
        "tests/test_placement.py",
        "tests/test_mut_placement.py",
    ),
    "solver.planner.model": (
        "tests/test_mut_planner_model.py",
    ),
    "service.servicer": (
        "tests/test_mut_servicer.py",
    ),
}

MUTANT_MARK = "__mutmut_"


def module_of_mutant(name: str) -> str | None:
    """``solver.costmodel.xǁCostModelǁlink__mutmut_3`` → ``solver.costmodel``; None outside a
    mutant run (stats collection is ``stats``, the clean run is empty)."""
    if MUTANT_MARK not in name:
        return None
    return name.rpartition(".")[0]


def pytest_configure(config: pytest.Config) -> None:
    """No example database in mutation runs: an example saved by one mutant's failure would
    otherwise be replayed against the next, and a run would depend on the order."""
    from hypothesis import settings

    settings.register_profile("mutation", database=None)
    settings.load_profile("mutation")


def pytest_sessionstart(session: pytest.Session) -> None:
    """A cold placement cache at the start of every run, as in a fresh ``make test`` process:
    mutmut runs the tests several times in one process (stats, the clean run) and forks each
    mutant's run from it, and tests/test_placement.py counts the cache's hits."""
    from solver import placement

    placement._solve_sorted_cached._store.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    module = module_of_mutant(os.environ.get("MUTANT_UNDER_TEST", ""))
    files = TESTS_BY_MODULE.get(module or "")
    if files is None:
        return
    keep = [item for item in items if item.nodeid.split("::", 1)[0] in files]
    drop = [item for item in items if item.nodeid.split("::", 1)[0] not in files]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- the table against the configuration -------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _mutmut_config() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mutmut"]


@pytest.mark.unit
def test_every_mutated_module_has_its_tests_and_they_exist() -> None:
    cfg = _mutmut_config()
    mutated = {p.removesuffix(".py").replace("/", ".") for p in cfg["only_mutate"]}
    assert mutated == set(TESTS_BY_MODULE)
    for files in TESTS_BY_MODULE.values():
        for name in files:
            assert (REPO / name).is_file(), name


@pytest.mark.unit
def test_the_selection_is_the_union_of_the_table() -> None:
    cfg = _mutmut_config()
    union = {name for files in TESTS_BY_MODULE.values() for name in files}
    assert set(cfg["pytest_add_cli_args_test_selection"]) == union
    assert "tests.test_mut_selection" in cfg["pytest_add_cli_args"]


@pytest.mark.unit
def test_module_of_mutant() -> None:
    assert module_of_mutant("solver.costmodel.x_to_ns__mutmut_1") == "solver.costmodel"
    assert module_of_mutant("solver.planner.model.xǁPlannerModelǁ_stages__mutmut_12") \
        == "solver.planner.model"
    assert module_of_mutant("stats") is None and module_of_mutant("") is None
