"""The bundled instances: every file loads, every seed's claimed plan is rejected for the errors its
document really makes, and every model instance is feasible (a plan verify accepts) but not trivial
(a plain plan verify rejects). What each seed claims and why it is wrong: docs/seeds.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.estimate import Prepared
from solver.instance import load_instance
from solver.params import check_declared
from solver.placement import place_experts_cached
from solver.schema import Degrees, LayerPlacement, Plan
from solver.verify import verify

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"
SEEDS = INSTANCES / "seeds"
MODELS = INSTANCES / "models"

ALL_FILES = sorted(p for p in INSTANCES.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})


def _id(path: Path) -> str:
    return str(path.relative_to(INSTANCES))


# ----------------------------------------------------------------------------------------------
# Every file loads
# ----------------------------------------------------------------------------------------------


def test_the_instance_set_is_complete() -> None:
    seeds = sorted(p.name for p in SEEDS.glob("*.yaml"))
    assert len(seeds) == 5
    assert [s[:4] for s in seeds] == ["000-", "001-", "002-", "003-", "004-"]
    assert "000-qwen3-235b.yaml" in seeds  # the default instance of `make run`
    models = {p.name for p in MODELS.glob("*.yaml")}
    assert {
        "qwen3-235b-a22b-fp8-h100.yaml",
        "deepseek-v3-h200.yaml",
        "mixtral-8x7b-h100.yaml",
        "gpt-oss-120b-h100.yaml",
        "llama-4-maverick-h200.yaml",
        "qwen3-235b-h100-powerlaw.yaml",
        "deepseek-v3-h200-powerlaw.yaml",
        "mixtral-8x7b-mlperf-offline.yaml",
    } <= models


@pytest.mark.parametrize("path", ALL_FILES, ids=_id)
def test_every_instance_file_loads(path: Path) -> None:
    inst = load_instance(path)
    assert inst.name and inst.description
    if path.parent == SEEDS:
        assert inst.hardware.name == "seed-card"
        assert inst.claimed_plan is not None


# ----------------------------------------------------------------------------------------------
# Seeds: the claimed plan is rejected, for the document's real errors
# ----------------------------------------------------------------------------------------------

#: file -> (rule ids verify must report, exactly; message fragments that must appear; claimed
#: metrics verify must flag as better than the cost model allows).
SEED_FINDINGS: dict[str, tuple[set[str], list[str], set[str]]] = {
    "000-qwen3-235b.yaml": (
        {"gpu_identity", "node_boundary", "throughput", "claim", "engine"},
        [
            "claimed 128 GPUs but replicas·pp·tp·cp·dp = 1·4·8·2·1 = 64",
            "etp·ep·edp = 1·128·1 = 128 must equal the attention grid tp·cp·dp = 8·2·1 = 16",
            "a TP·CP group of 8·2 = 16 GPUs does not fit inside 8-GPU nodes",
            "cp = 2: vLLM 0.11.0 has no context parallelism",
            "below the target 4000",
        ],
        {"output_tokens_per_s_per_gpu", "output_tokens_per_s", "peak_memory_gb"},
    ),
    "001-moe-10b-ep256.yaml": (
        {"gpu_identity", "divisibility", "throughput", "claim", "engine"},
        [
            "claimed 256 GPUs but replicas·pp·tp·cp·dp = 1·16·1·1·1 = 16",
            "ep = 256 exceeds the 16 expert slots",
            "below the target 100000",
        ],
        {"output_tokens_per_s_per_gpu", "peak_memory_gb"},
    ),
    "002-moe-30b-ep64.yaml": (
        {"gpu_identity", "engine"},
        [
            "claimed 128 GPUs but replicas·pp·tp·cp·dp = 1·4·2·1·1 = 8",
            "etp·ep·edp = 2·64·1 = 128 must equal the attention grid tp·cp·dp = 2·1·1 = 2",
        ],
        set(),
    ),
    "003-moe-10b-corrected-24gpu.yaml": (
        {"gpu_identity", "divisibility", "throughput", "claim", "engine"},
        [
            "claimed 24 GPUs but replicas·pp·tp·cp·dp = 1·2·2·1·3 = 12",
            "etp·ep·edp = 1·2·1 = 2 must equal the attention grid tp·cp·dp = 2·1·3 = 6",
            "dp = 3 does not divide the batch 128",
            "below the target 35000",
        ],
        {"output_tokens_per_s_per_gpu"},
    ),
    "004-moe-16l-tp8-ep8-pp2.yaml": (
        {"gpu_identity", "claim"},
        ["claimed 64 GPUs but replicas·pp·tp·cp·dp = 1·2·8·1·1 = 16"],
        {"output_tokens_per_s"},
    ),
}


@pytest.fixture(scope="module")
def seed_reports() -> dict:
    return {name: verify(load_instance(SEEDS / name)) for name in SEED_FINDINGS}


@pytest.mark.parametrize("name", sorted(SEED_FINDINGS))
def test_seed_claimed_plan_is_rejected_for_its_real_errors(name: str, seed_reports) -> None:
    rules, fragments, claims = SEED_FINDINGS[name]
    report = seed_reports[name]
    assert not report.valid
    assert {v.rule for v in report.violations} == rules
    text = "\n".join(str(v) for v in report.violations)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    flagged = {v.field.removeprefix("claimed_metrics.") for v in report.violations
               if v.rule == "claim"}
    assert flagged == claims


def test_seed_000_memory_claim_misses_the_kv_cache(seed_reports) -> None:
    """The document claims 2.84 GB per GPU (weights + buffers); the KV cache of 128 sequences at
    12k tokens alone is several times that."""
    ev = seed_reports["000-qwen3-235b.yaml"].evaluation
    memory = ev.breakdown["memory"]
    assert memory["total_gb"] > 2 * 2.84
    assert memory["terms_gb"]["kv_cache"] > memory["terms_gb"]["weights"]


def test_seed_001_and_003_throughput_is_far_below_the_claim(seed_reports) -> None:
    m1 = seed_reports["001-moe-10b-ep256.yaml"].evaluation.metrics
    m3 = seed_reports["003-moe-10b-corrected-24gpu.yaml"].evaluation.metrics
    assert m1.output_tokens_per_s_per_gpu < 120_000 / 5
    assert m3.output_tokens_per_s_per_gpu < 35_000 / 2


#: Declared totals that do not match the architecture: file -> fragment of check_declared's text.
DECLARED_MISMATCH = {
    "001-moe-10b-ep256.yaml": "declared_total_params 10,000,000,000 differs from the 318,128,640",
    "002-moe-30b-ep64.yaml": "declared_total_params 30,000,000,000 differs from the 4,428,694,528",
    "003-moe-10b-corrected-24gpu.yaml": "declared_total_params 10,000,000,000 differs from the "
    "318,128,640",
}


@pytest.mark.parametrize("name", sorted(SEED_FINDINGS))
def test_seed_declared_parameter_count(name: str) -> None:
    message = check_declared(load_instance(SEEDS / name).model)
    if name in DECLARED_MISMATCH:
        assert message is not None and DECLARED_MISMATCH[name] in message
    else:
        # 000 declares Qwen3-235B's 235B (it matches); 004 declares no total.
        assert message is None


def test_verify_reports_the_declared_parameter_mismatch(seed_reports) -> None:
    report = seed_reports["001-moe-10b-ep256.yaml"]
    text = "\n".join(report.warnings)
    assert "declared_total_params 10,000,000,000" in text
    assert "318,128,640" in text


# ----------------------------------------------------------------------------------------------
# Model instances: feasible (verify accepts a plan) but not trivially (a plain plan fails)
# ----------------------------------------------------------------------------------------------

#: file -> (degrees, batch) of a plan verify accepts.
FEASIBLE_PLANS: dict[str, tuple[dict[str, int], int]] = {
    "qwen3-235b-a22b-fp8-h100.yaml": ({"dp": 16, "ep": 16}, 256),
    "deepseek-v3-h200.yaml": ({"dp": 16, "ep": 16, "replicas": 4}, 256),
    "mixtral-8x7b-h100.yaml": ({"tp": 4, "ep": 4}, 200),
    "gpt-oss-120b-h100.yaml": ({"tp": 4, "ep": 4}, 256),
    "llama-4-maverick-h200.yaml": ({"tp": 4, "dp": 2, "ep": 8}, 128),
    "qwen3-235b-h100-powerlaw.yaml": ({"dp": 16, "ep": 16}, 256),
    "deepseek-v3-h200-powerlaw.yaml": ({"dp": 16, "ep": 16, "replicas": 4}, 256),
    "mixtral-8x7b-mlperf-offline.yaml": ({"replicas": 8}, 490),
    "kimi-k2-h200-powerlaw.yaml": ({"dp": 16, "ep": 16, "replicas": 13}, 384),
    # serving: best; its two-pool plans are checked in tests/test_disagg_interfaces.py
    "deepseek-v3-h100-disagg.yaml": ({"dp": 32, "ep": 32, "replicas": 2}, 608),
}


@pytest.mark.parametrize("name", sorted(FEASIBLE_PLANS))
def test_model_instance_has_a_plan_verify_accepts(name: str) -> None:
    degrees, batch = FEASIBLE_PLANS[name]
    d = Degrees(**degrees)
    inst = load_instance(MODELS / name)
    assert d.gpus <= (inst.workload.targets.max_gpus or 64)
    report = verify(inst, Plan(degrees=d, batch=batch))
    assert report.valid, [str(v) for v in report.violations]


def test_every_model_instance_has_a_feasible_plan_in_the_test() -> None:
    assert {p.name for p in MODELS.glob("*.yaml")} == set(FEASIBLE_PLANS)


#: file -> (degrees, batch, rule ids verify reports): a plain single-node plan that fails.
NAIVE_PLANS: dict[str, tuple[dict[str, int], int, set[str]]] = {
    "qwen3-235b-a22b-fp8-h100.yaml": ({"tp": 8, "ep": 8}, 256, {"memory", "tpot"}),
    "deepseek-v3-h200.yaml": ({"tp": 8, "ep": 8}, 256, {"memory", "tpot", "throughput"}),
    "mixtral-8x7b-h100.yaml": ({"tp": 2, "ep": 2}, 32, {"throughput"}),
    "gpt-oss-120b-h100.yaml": ({}, 256, {"memory", "tpot"}),
    "llama-4-maverick-h200.yaml": ({"tp": 8, "ep": 8}, 16, {"throughput"}),
}


@pytest.mark.parametrize("name", sorted(NAIVE_PLANS))
def test_model_instance_is_not_trivial(name: str) -> None:
    degrees, batch, rules = NAIVE_PLANS[name]
    report = verify(load_instance(MODELS / name), Plan(degrees=Degrees(**degrees), batch=batch))
    assert {v.rule for v in report.violations} == rules


def test_powerlaw_instances_are_skewed_with_32_redundant_slots() -> None:
    for name, experts in [("qwen3-235b-h100-powerlaw.yaml", 128),
                          ("deepseek-v3-h200-powerlaw.yaml", 256)]:
        inst = load_instance(MODELS / name)
        assert inst.expert_load.kind == "power_law" and inst.expert_load.alpha == 1.01
        assert inst.search.redundant_experts == 32
        assert inst.model.num_experts == experts
        # Uniform would give every expert 1/E of the tokens; the hottest gets far more.
        assert Prepared(inst).max_load_share > 10 / experts


def test_verify_accepts_the_planners_placement_on_a_powerlaw_instance() -> None:
    inst = load_instance(MODELS / "qwen3-235b-h100-powerlaw.yaml")
    prep = Prepared(inst)
    d = Degrees(dp=16, ep=16)
    placement = tuple(
        LayerPlacement(layer=layer,
                       ranks=place_experts_cached(prep.loads[i], d.ep, 32).ranks)
        for i, layer in enumerate(prep.moe_layers)
    )
    report = verify(inst, Plan(degrees=d, batch=256, placement=placement, redundant_experts=32))
    assert report.valid, sorted({str(v) for v in report.violations})[:3]


def test_mlperf_calibration_instance() -> None:
    inst = load_instance(MODELS / "mixtral-8x7b-mlperf-offline.yaml")
    assert inst.workload.targets.model_dump(exclude_none=True) == {}
    pinned = Degrees(**inst.search.fix)
    assert pinned.gpus == 8
    assert "52,416" in inst.description
    assert inst.engine.name == "trtllm" and inst.model.weight_block_size is None
    assert inst.workload.batch_bounds == (1, 896)  # the submission's gpu_batch_size
