"""moeplan pareto: each point is the optimum of its constraint (checked against a brute-force
enumeration of every plan of a small instance, written here from the reference's plain ranges
and the verifier), points are mutually non-dominated and pass verify, the worked power-law
instance gives at least 8 points within 60 s; CLI (table, CSV, JSON, PNG, --out then export)
and gRPC (streamed points, then the summary)."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import pytest
from conftest import REPO, one_error_line, run

from solver import timing
from solver.estimate import Prepared
from solver.instance import InputError, instance_from_dict, load_instance
from solver.planner.pareto import frontier_instance, pareto, rate_frontier
from solver.reference import _placement, compositions, grids
from solver.schema import Plan
from solver.verify import verify

POWERLAW = REPO / "instances/models/qwen3-235b-h100-powerlaw.yaml"

TINY = {
    "name": "tiny-frontier",
    "model": {"name": "tiny-moe", "num_layers": 4, "hidden_size": 1024,
              "attention": {"num_heads": 8, "num_kv_heads": 8, "head_dim": 128},
              "num_experts": 8, "top_k": 2, "expert_ffn_width": 512, "vocab_size": 8000},
    "hardware": "seed-card",
    "workload": {"input_len": 256, "output_len": 64, "batch": 8,
                 "targets": {"max_gpus": 4, "max_ttft_s": 0.5}},
    "search": {"time_limit_s": 30},
}
BATCH = (1, 12)


def rate_and_tpot(inst, plan: Plan) -> tuple[Fraction, int] | None:
    report = verify(inst, plan)
    if not report.valid:
        return None
    r = report.evaluation.result
    gpi = plan.degrees.gpus_per_instance
    return Fraction(plan.batch * timing.NS_PER_S, r.tpot_ns * gpi), r.tpot_ns


@pytest.fixture(scope="module")
def tiny():
    inst = instance_from_dict(TINY)
    fr = rate_frontier(inst, batch=BATCH, time_limit_s=60, points=64, step=0.9)
    return inst, fr


@pytest.fixture(scope="module")
def every_plan(tiny):
    """Every valid plan of the frontier's instance: every grid within max_gpus, every batch of
    the range, every contiguous partition, the planner's placement sub-model (as the reference
    does); (rate per GPU, TPOT) of each."""
    inst = tiny[1].instance
    prep = Prepared(inst)
    out = []
    for g in grids(prep, inst.workload.targets.max_gpus):
        red = prep.space.redundant(g.ep)
        placement = _placement(prep, g.ep, red)
        for batch in range(BATCH[0], BATCH[1] + 1):
            for stages in compositions(inst.model.num_layers, g.pp):
                plan = Plan(degrees=g.degrees(1), batch=batch, redundant_experts=red if g.ep > 1
                            else None, stages=stages, placement=placement)
                got = rate_and_tpot(inst, plan)
                if got is not None:
                    out.append(got)
    assert out
    return out


@pytest.mark.integration
def test_each_point_is_the_optimum_of_its_cap(tiny, every_plan) -> None:
    _, fr = tiny
    assert len(fr.points) >= 3 and fr.complete
    for p in fr.points:
        cap = p.tpot_cap_ns
        feasible = [x for x in every_plan if cap is None or x[1] <= cap]
        best_rate = max(r for r, _ in feasible)
        assert p.rate_per_gpu == best_rate
        # then the most tokens/s per user (least TPOT) among plans with that rate
        assert p.tpot_ns == min(t for r, t in feasible if r == best_rate)
        assert p.proved


@pytest.mark.integration
def test_no_plan_dominates_a_point_and_the_steps_leave_none_out(tiny, every_plan) -> None:
    _, fr = tiny
    for p in fr.points:
        assert not any(r >= p.rate_per_gpu and t <= p.tpot_ns and (r, t) != (p.rate_per_gpu,
                                                                            p.tpot_ns)
                       for r, t in every_plan)
    # the last point: no valid plan is faster than the cap after it
    last = fr.points[-1]
    assert fr.stopped == "no plan is faster"
    assert min(t for _, t in every_plan) == last.tpot_ns


@pytest.mark.integration
def test_points_pass_verify_and_are_mutually_non_dominated(tiny) -> None:
    inst, fr = tiny
    assert fr.instance.workload.batch_bounds == BATCH
    for p in fr.points:
        assert verify(fr.instance, p.plan).valid
    pairs = [(p.rate_per_gpu, p.tpot_ns) for p in fr.points]
    for i, (r, t) in enumerate(pairs):
        for j, (r2, t2) in enumerate(pairs):
            if i != j:
                assert not (r2 >= r and t2 <= t), (pairs[i], pairs[j])


@pytest.mark.integration
def test_qwen3_power_law_frontier_has_8_proved_points_within_60_s() -> None:
    inst = load_instance(POWERLAW)
    start = time.monotonic()
    doc = pareto(inst, time_limit_s=60)
    elapsed = time.monotonic() - start
    assert elapsed <= 60, elapsed
    assert len(doc.points) >= 8
    assert all(p.proved for p in doc.points)
    for p in doc.points:
        report = verify(doc.instance, p.plan)
        assert report.valid, report.violations
        m = report.evaluation.metrics
        assert m.output_tokens_per_s_per_gpu == pytest.approx(p.output_tokens_per_s_per_gpu)
        t = inst.workload.targets  # every point meets the instance's own targets
        assert m.tpot_s <= t.max_tpot_s and m.ttft_s <= t.max_ttft_s
        assert m.output_tokens_per_s_per_gpu >= t.min_output_tokens_per_s_per_gpu
    for a in doc.points:
        for b in doc.points:
            if a.index != b.index:
                assert not (b.output_tokens_per_s_per_gpu >= a.output_tokens_per_s_per_gpu
                            and b.tokens_per_s_per_user >= a.tokens_per_s_per_user)
    # the planner's own plan (batch 256, fixed by the instance) is a point of the frontier
    assert doc.chosen is not None and doc.chosen.on_frontier is not None
    assert doc.points[doc.chosen.on_frontier].batch == 256


@pytest.mark.unit
def test_fixed_replicas_are_refused() -> None:
    data = {**TINY, "search": {"fix": {"replicas": 2}}}
    with pytest.raises(InputError) as err:
        rate_frontier(instance_from_dict(data), batch=BATCH, time_limit_s=10)
    assert err.value.field == "search.fix.replicas"


@pytest.mark.unit
def test_frontier_instance_frees_the_batch_only() -> None:
    inst = instance_from_dict(TINY)
    free = frontier_instance(inst)
    assert free.workload.batch_bounds == (1, 65536)
    assert free.model_copy(update={"workload": inst.workload}) == inst


@pytest.mark.integration
def test_gpu_frontier_steps_ttft(tiny) -> None:
    inst, _ = tiny
    doc = pareto(inst, frontier="gpus", time_limit_s=30, chosen=False)
    assert doc.points
    gpus = [p.gpus for p in doc.points]
    ttfts = [p.ttft_s for p in doc.points]
    assert gpus == sorted(set(gpus)) and ttfts == sorted(ttfts, reverse=True)
    for p in doc.points:
        assert verify(inst, p.plan).valid


@pytest.mark.integration
def test_cli_table_csv_json_png_and_export_a_point(runner, tmp_path) -> None:
    import jsonschema

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    result = run(runner, "pareto", path, "--batch", "1:12", "--csv", tmp_path / "p.csv", "--png",
                 tmp_path / "p.png", "--out", tmp_path / "out", "--time-limit", "60")
    assert result.exit_code == 0, result.stderr
    assert "tok/s/GPU" in result.stdout and "chosen (moeplan solve)" in result.stdout
    assert "+----" in result.stdout  # the ASCII chart
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("index,gpus") and len(rows) >= 4
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "out/pareto.json").read_text())
    jsonschema.validate(doc, json.loads(run(runner, "schema", "--what", "pareto").stdout))
    assert len(rows) - 1 == len(doc["points"])
    check = run(runner, "verify", tmp_path / "out/instance.json", "--plan",
                tmp_path / "out/point-00.json")
    assert check.exit_code == 0, check.stdout
    exported = run(runner, "export", tmp_path / "out/instance.json", "--plan",
                   tmp_path / "out/point-00.json", "--engine", "vllm", "--json")
    assert exported.exit_code == 0, exported.stderr
    one_error_line(run(runner, "pareto", path, "--step", "1.5"), "--step")


@pytest.mark.e2e
def test_grpc_pareto_streams_points_then_the_summary(tiny) -> None:
    from conftest import serving

    from service.client import PlannerClient
    from service.server import ServerConfig

    inst, _ = tiny
    with serving(ServerConfig(port=0, workers=1, queue=1)) as (_, address):
        with PlannerClient(address) as client:
            got = list(client.pareto(inst, time_limit_s=30, points=4))
    *streamed, summary = got
    assert len(summary.points) == len(streamed) >= 1
    assert streamed == summary.points
    for p in summary.points:
        assert verify(summary.instance, p.plan).valid
