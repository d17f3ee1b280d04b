"""moeplan pareto with two-pool plans (``--serving disaggregated | both``): each point of the
disaggregated frontier has the fewest GPUs of both pools under its TPOT cap (checked against the
exhaustive two-pool reference), the step below it needs more GPUs, the points are mutually
non-dominated and their figures agree with the independent evaluator; the CLI's ``--serving
both`` output (table, CSV, JSON, --out) and the gRPC stream carry both frontiers; without a
total-rate target a two-pool frontier is a one-line error (exit 2, INVALID_ARGUMENT)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from conftest import one_error_line, run

from solver import disagg, timing
from solver.instance import InputError, instance_from_dict
from solver.planner.pareto import check_serving, disagg_frontier, pareto
from solver.planner.pareto_disagg import capped, tpot_cap_seconds
from solver.reference import reference_disagg_search
from tests import disagg_oracle

RATE = 100_000.0
SMALL = {
    "name": "tiny-two-pools",
    "model": {"name": "tiny-moe", "num_layers": 4, "hidden_size": 1024,
              "attention": {"num_heads": 8, "num_kv_heads": 8, "head_dim": 128},
              "num_experts": 8, "top_k": 2, "expert_ffn_width": 512, "vocab_size": 8000},
    "hardware": "seed-card",
    "workload": {"input_len": 256, "output_len": 64, "batch": 8,
                 "targets": {"max_gpus": 8, "max_ttft_s": 0.5,
                             "min_output_tokens_per_s": RATE}},
    "serving": "disaggregated",
    "disaggregation": {"prefill_tokens": [256, 512]},
    "search": {"time_limit_s": 30},
}
BATCH = (1, 12)


@pytest.fixture(scope="module")
def frontier():
    inst = instance_from_dict(SMALL)
    return inst, disagg_frontier(inst, batch=BATCH, time_limit_s=60, points=64, step=0.9)


@pytest.mark.integration
def test_each_point_is_the_fewest_gpus_under_its_cap(frontier) -> None:
    _, fr = frontier
    assert len(fr.points) >= 3 and fr.complete and fr.stopped == "no plan is faster"
    caps = [p.tpot_cap_ns for p in fr.points]
    for i, p in enumerate(fr.points):
        ref = reference_disagg_search(capped(fr.instance, p.tpot_cap_ns), time_limit_s=60)
        assert ref.status == "OPTIMAL" and p.proved
        assert p.gpus == ref.gpus, (i, p.tpot_cap_ns)
        assert p.tpot_cap_ns is None or p.tpot_ns <= p.tpot_cap_ns
        # the step below the point (towards the next point) needs more GPUs, or none exists
        below = p.tpot_ns - 1 if i + 1 == len(fr.points) else caps[i + 1]
        nxt = reference_disagg_search(capped(fr.instance, below), time_limit_s=60)
        if i + 1 == len(fr.points):
            assert nxt.status == "INFEASIBLE"
        else:
            assert nxt.gpus == fr.points[i + 1].gpus > p.gpus


@pytest.mark.integration
def test_points_are_non_dominated_and_agree_with_the_independent_evaluator(frontier) -> None:
    inst, fr = frontier
    target_ttft = timing.seconds_to_ns_floor(inst.workload.targets.max_ttft_s)
    figures = []
    for p in fr.points:
        report = disagg.verify(fr.instance, p.plan)
        assert report.valid, report.violations
        ref = disagg_oracle.evaluate(fr.instance, p.plan)
        assert ref.tpot_ns == p.tpot_ns and ref.ttft_ns is not None
        assert ref.ttft_ns <= target_ttft
        # tokens/s per GPU: the planned output rate over both pools' GPUs
        assert p.metrics.output_tokens_per_s_per_gpu == pytest.approx(RATE / p.gpus)
        figures.append((Fraction(RATE) / p.gpus, Fraction(timing.NS_PER_S, p.tpot_ns)))
    for i, (r, u) in enumerate(figures):
        for j, (r2, u2) in enumerate(figures):
            if i != j:
                assert not (r2 >= r and u2 >= u), (figures[i], figures[j])


@pytest.mark.unit
def test_serving_defaults_and_refusals() -> None:
    inst = instance_from_dict(SMALL)
    assert check_serving(inst, "rate", None) == "disaggregated"
    assert check_serving(inst.model_copy(update={"serving": "best"}), "rate", None) == "both"
    assert check_serving(inst.model_copy(update={"serving": "aggregated"}), "rate",
                         None) == "aggregated"
    assert check_serving(inst, "gpus", None) == "aggregated"
    with pytest.raises(InputError) as err:
        check_serving(inst, "gpus", "both")
    assert err.value.field == "serving"
    no_rate = {**SMALL, "serving": "aggregated", "workload": {
        **SMALL["workload"], "targets": {"max_gpus": 8, "max_ttft_s": 0.5}}}
    with pytest.raises(InputError) as err:
        pareto(instance_from_dict(no_rate), serving="disaggregated")
    assert err.value.field == "workload.targets.min_output_tokens_per_s"
    for ns in (1, 999, 54_501, 107_601, 2_000_000_003):  # caps read back exactly
        assert timing.seconds_to_ns_floor(tpot_cap_seconds(ns)) == ns


@pytest.mark.integration
def test_cli_both_frontiers_table_csv_json_and_out(runner, tmp_path) -> None:
    import jsonschema

    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    result = run(runner, "pareto", path, "--batch", "1:12", "--serving", "both", "--json",
                 "--csv", tmp_path / "p.csv", "--out", tmp_path / "out", "--step", "0.9",
                 "--time-limit", "60")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, json.loads(run(runner, "schema", "--what", "pareto").stdout))
    assert doc["serving"] == "both"
    kinds = [p["serving"] for p in doc["points"]]
    assert "aggregated" in kinds and "disaggregated" in kinds
    assert kinds == sorted(kinds)  # the aggregated frontier first, then the two-pool one
    assert [p["index"] for p in doc["points"]] == list(range(len(kinds)))
    for p in doc["points"]:
        assert (p["plan"] is None) == (p["serving"] == "disaggregated")
        assert (p["disagg_plan"] is None) == (p["serving"] == "aggregated")
    # the chosen plan is the planner's two-pool answer to the instance (the first step, with
    # no TPOT cap): the first two-pool point, or dominated by it (the same GPUs, and a step
    # below it with as many GPUs streams faster)
    chosen = doc["chosen"]
    first = doc["points"][kinds.index("disaggregated")]
    assert chosen["serving"] == "disaggregated" and chosen["gpus"] == first["gpus"]
    assert first["index"] in (chosen["on_frontier"], chosen["dominated_by"])
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("serving,index,gpus") and rows[0].endswith(",prefill")
    assert len(rows) - 1 == len(kinds)
    first_pair = kinds.index("disaggregated")
    check = run(runner, "verify", tmp_path / "out/instance.json", "--plan",
                tmp_path / f"out/point-{first_pair:02d}.json")
    assert check.exit_code == 0, check.stdout
    table = run(runner, "pareto", path, "--batch", "1:12", "--serving", "both", "--no-chosen",
                "--step", "0.9", "--time-limit", "60")
    assert table.exit_code == 0, table.stderr
    assert "serving" in table.stdout and "P tp" in table.stdout and " d" in table.stdout
    no_rate = {**SMALL, "serving": "aggregated", "workload": {
        **SMALL["workload"], "targets": {"max_gpus": 8, "max_ttft_s": 0.5}}}
    path.write_text(json.dumps(no_rate))
    one_error_line(run(runner, "pareto", path, "--serving", "both"),
                   "workload.targets.min_output_tokens_per_s")


@pytest.mark.e2e
def test_grpc_streams_both_frontiers_and_refuses_a_pool_frontier_without_a_rate() -> None:
    import grpc
    from conftest import serving

    from service import convert
    from service._gen.moeplan.v1 import planner_pb2 as pb
    from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
    from service.server import ServerConfig

    inst = instance_from_dict(SMALL)
    request = pb.ParetoRequest(instance=convert.instance_to_proto(inst), points=3,
                               time_limit_s=30, chosen=False,
                               serving=pb.FRONTIER_SERVING_BOTH,
                               batch=pb.BatchRange(min=BATCH[0], max=BATCH[1]))
    no_rate = instance_from_dict({**SMALL, "serving": "aggregated", "workload": {
        **SMALL["workload"], "targets": {"max_gpus": 8}}})
    with serving(ServerConfig(port=0, workers=1, queue=1)) as (_, address):
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.PlannerStub(channel)
            got = list(stub.Pareto(request, timeout=60))
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Pareto(pb.ParetoRequest(
                    instance=convert.instance_to_proto(no_rate),
                    serving=pb.FRONTIER_SERVING_DISAGGREGATED), timeout=30))
        from service.client import PlannerClient

        with PlannerClient(address) as client:  # the Python client sends serving too
            with pytest.raises(Exception, match="min_output_tokens_per_s"):
                list(client.pareto(no_rate, serving="disaggregated"))
    *streamed, last = got
    summary = convert.pareto_from_proto(last.summary)
    points = [convert.pareto_point_from_proto(m.point) for m in streamed]
    assert summary.serving == "both" and points == summary.points
    assert {p.serving for p in points} == {"aggregated", "disaggregated"}
    for p in points:
        if p.serving == "disaggregated":
            assert disagg.verify(summary.instance, p.disagg_plan).valid
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workload.targets.min_output_tokens_per_s" in info.value.details()
