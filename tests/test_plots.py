"""Pictures: the cactus plot, the placement heatmap and the memory chart are valid PNGs, and the
numbers behind them add up."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from moeplan import plots
from moeplan.cli import app
from solver.estimate import Prepared, evaluate
from solver.instance import load_instance
from solver.planner import solve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
#: Power-law load on 4 EP ranks: the heatmap has something to show. Solves in well under 1 s.
SKEWED = REPO / "instances/sweep/load-powerlaw-a1.01-r00-medium-e064-h100.yaml"
#: A valid claimed plan with two pipeline stages (tp 8, ep 8, pp 2).
CLAIMED = REPO / "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG), path
    assert len(data) > 1000, path


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def fake_record(i: int, planner_s: float, ref_status: str, ref_s: float) -> dict:
    return {
        "path": f"i{i}.yaml", "status": "OPTIMAL" if i % 4 else "INFEASIBLE",
        "wall_time_s": planner_s,
        "reference": {"status": ref_status, "time_s": ref_s, "time_limit_s": 10.0},
    }


def test_cactus_plot(tmp_path):
    records = [fake_record(i, 0.01 * (i + 1), "OPTIMAL" if i < 7 else "TIMEOUT", 0.5 * i)
               for i in range(10)]
    records.append({"path": "bad.yaml", "status": "ERROR", "wall_time_s": None,
                    "reference": None})
    assert_png(plots.cactus_plot(records, tmp_path / "sub" / "cactus.png"))
    assert plots._solved_times(records, "planner") == pytest.approx(
        [0.01 * (i + 1) for i in range(10)])
    assert len(plots._solved_times(records, "reference")) == 7
    # Without any reference runs and with nothing solved it still draws.
    assert_png(plots.cactus_plot([{"path": "x", "status": "UNKNOWN", "reference": None}],
                                 tmp_path / "empty.png"))


def test_plot_solves_and_draws_both_pictures(tmp_path):
    result = run("plot", SKEWED, "--out", tmp_path / "out", "--workers", "2")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    stem = SKEWED.stem
    assert_png(tmp_path / "out" / f"{stem}-placement.png")
    assert_png(tmp_path / "out" / f"{stem}-memory.png")
    assert "placement heatmap:" in result.stdout and "memory per stage:" in result.stdout


def test_plot_claimed_plan_and_plan_spec(tmp_path):
    result = run("plot", CLAIMED, "--claimed", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert_png(tmp_path / f"{CLAIMED.stem}-placement.png")
    assert_png(tmp_path / f"{CLAIMED.stem}-memory.png")
    os.remove(tmp_path / f"{CLAIMED.stem}-memory.png")
    result = run("plot", CLAIMED, "--plan", "tp=4,ep=4,pp=4", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert_png(tmp_path / f"{CLAIMED.stem}-memory.png")


def test_plot_errors_are_one_line(tmp_path):
    result = run("plot", tmp_path / "missing.yaml")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    (tmp_path / "file").write_text("x")
    result = run("plot", CLAIMED, "--claimed", "--out", tmp_path / "file")
    assert result.exit_code == 2 and result.stderr.startswith("error: --out:")
    result = run("plot", CLAIMED, "--claimed", "--plan", "tp=1")
    assert result.exit_code == 2 and "--claimed" in result.stderr


def test_plot_of_infeasible_instance_exits_1(tmp_path):
    inst = tmp_path / "inf.yaml"
    inst.write_text(
        "model: qwen3-30b-a3b\nhardware: h100-sxm\n"
        "workload: {input_len: 8192, output_len: 64, batch: 8, targets: {max_ttft_s: 0.001}}\n"
        "search: {max_pp: 1, max_dp: 1, max_cp: 1}\n")
    result = run("plot", inst, "--out", tmp_path)
    assert result.exit_code == 1
    assert "INFEASIBLE" in result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_memory_parts_add_up_to_the_stage_memory():
    instance = load_instance(CLAIMED)
    plan = instance.claimed_plan
    ev = evaluate(instance, plan)
    parts = plots.stage_memory(ev)
    assert len(parts) == plan.degrees.pp
    for s, p in enumerate(parts):
        assert set(p) == set(plots.MEMORY_PARTS)
        assert sum(p.values()) == ev.result.stage_mem_bytes[s]
        assert p["weights"] > 0 and p["KV cache"] > 0
        assert p["activations"] >= 0


def test_heatmap_rows_average_to_one():
    instance = load_instance(SKEWED)
    result = solve(instance, workers=2)
    prep = Prepared(instance)
    layers, mat = plots.layer_rank_loads(prep, result.plan)
    assert layers == list(instance.model.moe_layers)
    assert mat.shape == (len(layers), result.plan.degrees.ep)
    # Each row is rank load / even share: it averages 1 (up to the ceil of replica loads).
    assert np.allclose(mat.mean(axis=1), 1.0, atol=1e-4)
    hottest = {e.layer: e.hottest_load for e in result.experts}
    for i, layer in enumerate(layers):
        assert mat[i].max() == pytest.approx(hottest[layer] * result.plan.degrees.ep)
