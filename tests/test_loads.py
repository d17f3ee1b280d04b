"""Per-layer integer expert loads (solver.loads)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.loads import LOAD_RESOLUTION, largest_remainder, layer_loads, zipf_loads
from solver.schema import AttentionSpec, ExpertLoad, ModelSpec

pytestmark = pytest.mark.unit


def make_model(num_experts: int = 8, num_layers: int = 5, dense: tuple[int, ...] = (0,)):
    return ModelSpec(
        num_layers=num_layers,
        dense_layers=dense,
        hidden_size=64,
        attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16),
        dense_ffn_width=128 if dense else 0,
        num_experts=num_experts,
        top_k=2,
        expert_ffn_width=32,
        vocab_size=100,
    )


def test_one_array_per_moe_layer_each_summing_exactly() -> None:
    model = make_model(num_experts=7, num_layers=6, dense=(0, 3))
    for load in (
        ExpertLoad(),
        ExpertLoad(kind="power_law", alpha=1.2, seed=3),
        ExpertLoad(kind="measured", counts=tuple((1, 2, 3, 4, 5, 6, 7) for _ in range(4))),
    ):
        loads = layer_loads(model, load)
        assert len(loads) == len(model.moe_layers) == 4
        for row in loads:
            assert row.dtype == np.int64
            assert row.shape == (7,)
            assert row.min() >= 0
            assert int(row.sum()) == LOAD_RESOLUTION


def test_uniform_is_equal_up_to_one_unit_of_rounding() -> None:
    (row, *_) = layer_loads(make_model(num_experts=8), ExpertLoad(kind="uniform"))
    assert set(row.tolist()) == {LOAD_RESOLUTION // 8}
    (row, *_) = layer_loads(make_model(num_experts=256), ExpertLoad(kind="uniform"))
    assert row.max() - row.min() == 1  # 1e6 / 256 = 3906.25: the first 64 experts carry 3907
    assert row.tolist() == sorted(row.tolist(), reverse=True)


def test_power_law_is_zipf_permuted_per_layer() -> None:
    model = make_model(num_experts=64, num_layers=4, dense=())
    loads = layer_loads(model, ExpertLoad(kind="power_law", alpha=1.01, seed=5))
    descending = zipf_loads(64, 1.01, model.top_k)
    assert np.all(np.diff(descending) <= 0)
    assert descending[0] / descending[1] == pytest.approx(2**1.01, rel=1e-4)
    for i, row in enumerate(loads):
        # Same multiset in every layer, permuted by default_rng(seed + layer index).
        assert np.array_equal(np.sort(row)[::-1], descending)
        permutation = np.random.default_rng(5 + i).permutation(64)
        assert np.array_equal(row, descending[permutation])
    assert len({int(np.argmax(row)) for row in loads}) > 1  # the hot expert moves


def test_measured_rows_are_normalised() -> None:
    model = make_model(num_experts=3, num_layers=2, dense=())
    counts = ((1, 1, 2), (1, 1, 1))
    first, second = layer_loads(model, ExpertLoad(kind="measured", counts=counts))
    assert first.tolist() == [250_000, 250_000, 500_000]
    # 1e6 / 3 each: the one missing unit goes to the lowest index among equal remainders.
    assert second.tolist() == [333_334, 333_333, 333_333]


def test_measured_shape_mismatch_is_an_error() -> None:
    model = make_model(num_experts=3, num_layers=2, dense=())
    with pytest.raises(ValueError, match="rows"):
        layer_loads(model, ExpertLoad(kind="measured", counts=((1, 2, 3),)))
    with pytest.raises(ValueError, match="columns"):
        layer_loads(model, ExpertLoad(kind="measured", counts=((1, 2), (3, 4))))


def test_deterministic() -> None:
    model = make_model(num_experts=32, num_layers=3, dense=())
    load = ExpertLoad(kind="power_law", alpha=0.8, seed=11)
    first, second = layer_loads(model, load), layer_loads(model, load)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=50), st.integers(1, 10**7))
def test_largest_remainder_is_exact_and_within_one_unit(counts: list[int], total: int) -> None:
    if sum(counts) == 0:
        counts[0] = 1
    shares = largest_remainder(np.array(counts, dtype=np.int64), sum(counts), total)
    assert int(shares.sum()) == total
    exact = [c * total / sum(counts) for c in counts]
    assert all(abs(s - x) < 1 + 1e-6 for s, x in zip(shares.tolist(), exact, strict=True))


def test_the_default_load_is_the_documented_power_law() -> None:
    load = ExpertLoad()
    assert (load.kind, load.alpha) == ("power_law", 0.35)
    assert ExpertLoad.model_validate({"kind": "power_law"}).alpha == 0.35


def test_no_expert_takes_more_than_every_token() -> None:
    # A token picks top_k distinct experts: one expert gets at most 1/top_k of the copies.
    for experts, top_k, alpha in ((8, 2, 1.2), (128, 8, 1.2), (64, 4, 2.0), (16, 1, 3.0)):
        z = zipf_loads(experts, alpha, top_k)
        assert int(z.sum()) == LOAD_RESOLUTION
        assert int(z.max()) <= -(-LOAD_RESOLUTION // top_k)
        assert np.all(np.diff(z) <= 0)
    # below the cap the shares stay Zipf: 1/1 : 1/2**alpha
    z = zipf_loads(256, 0.35, 8)
    assert z[0] / z[1] == pytest.approx(2**0.35, rel=1e-4)


def test_cap_redistributes_to_the_others_in_proportion() -> None:
    from solver.loads import cap_shares

    shares = cap_shares(np.array([8.0, 1.0, 1.0, 0.0]), top_k=2)
    assert shares.tolist() == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert cap_shares(np.array([1.0, 1.0]), top_k=2).tolist() == pytest.approx([0.5, 0.5])
