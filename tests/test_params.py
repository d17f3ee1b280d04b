"""Parameter counts and KV size: hand-computed tiny models, the bundled presets against the vendors'
published numbers, and properties of generated models."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.params import (
    active_params,
    check_declared,
    embedding_params,
    kv_bytes_per_token,
    kv_bytes_per_token_per_layer,
    layer_params,
    lm_head_params,
    param_bytes,
    total_params,
)
from solver.presets import PUBLISHED_TOTAL_PARAMS, load_model_preset, model_preset_names
from solver.schema import AttentionSpec, ModelSpec

pytestmark = pytest.mark.unit


def tiny_gqa(**overrides: object) -> ModelSpec:
    """3 layers (layer 0 dense), hidden 64, 4 query heads / 2 KV heads of 16, 4 experts of 32."""
    attention = {"num_heads": 4, "num_kv_heads": 2, "head_dim": 16}
    attention.update(overrides.pop("attention", {}))  # type: ignore[arg-type]
    fields: dict[str, object] = {
        "name": "tiny-gqa",
        "num_layers": 3,
        "dense_layers": (0,),
        "hidden_size": 64,
        "attention": attention,
        "dense_ffn_width": 128,
        "num_experts": 4,
        "top_k": 2,
        "expert_ffn_width": 32,
        "num_shared_experts": 1,
        "shared_expert_width": 48,
        "vocab_size": 100,
    }
    fields.update(overrides)
    return ModelSpec.model_validate(fields)


def tiny_mla(q_lora_rank: int = 16) -> ModelSpec:
    attention = AttentionSpec(
        kind="mla",
        num_heads=4,
        num_kv_heads=4,
        head_dim=12,
        q_lora_rank=q_lora_rank,
        kv_lora_rank=8,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
    )
    return ModelSpec(
        name="tiny-mla",
        num_layers=2,
        hidden_size=64,
        attention=attention,
        num_experts=4,
        top_k=1,
        expert_ffn_width=32,
        vocab_size=100,
    )


# ----------------------------------------------------------------------------------------------
# Hand-computed counts
# ----------------------------------------------------------------------------------------------


def test_tiny_gqa_layers_by_hand() -> None:
    m = tiny_gqa()
    dense, moe = layer_params(m, 0), layer_params(m, 1)
    # q 64x64 + k,v 64x32 each + o 64x64
    assert dense.attn_sharded == moe.attn_sharded == 4096 + 2 * 2048 + 4096 == 12288
    assert dense.attn_replicated == 2 * 64  # two RMSNorms
    assert dense.dense_ffn == 3 * 64 * 128 == 24576
    assert (dense.router, dense.expert, dense.num_experts, dense.shared) == (0, 0, 0, 0)
    assert dense.total == dense.active == 12288 + 128 + 24576 == 36992

    assert moe.dense_ffn == 0
    assert moe.router == 64 * 4
    assert moe.expert == 3 * 64 * 32 == 6144
    assert moe.num_experts == 4 and moe.top_k == 2
    assert moe.shared == 3 * 64 * 48 == 9216
    assert moe.total == 12288 + 128 + 256 + 4 * 6144 + 9216 == 46464
    assert moe.active == 12288 + 128 + 256 + 2 * 6144 + 9216 == 34176


def test_tiny_gqa_totals_by_hand() -> None:
    m = tiny_gqa()
    assert embedding_params(m) == 6400
    assert lm_head_params(m) == 6400 + 64  # matrix + final norm
    assert total_params(m) == 36992 + 2 * 46464 + 6400 + 6464 == 142784
    assert active_params(m) == 36992 + 2 * 34176 + 6400 + 6464 == 118208


def test_tied_embeddings_count_the_matrix_once() -> None:
    m = tiny_gqa(tie_embeddings=True)
    assert lm_head_params(m) == 64
    assert total_params(m) == 142784 - 6400


def test_biases_sinks_qk_norm_by_hand() -> None:
    base = layer_params(tiny_gqa(), 1)
    m = tiny_gqa(
        attention={"bias": True, "sinks": True, "qk_norm": True}, ffn_bias=True, router_bias=True
    )
    lp = layer_params(m, 1)
    assert lp.attn_sharded - base.attn_sharded == 64 + 2 * 32 + 64  # q, k, v, o biases
    assert lp.attn_replicated - base.attn_replicated == 4 + 2 * 16  # sinks + q/k norms
    assert lp.router - base.router == 4
    assert lp.expert - base.expert == 2 * 32 + 64  # gate/up + down biases
    assert lp.shared - base.shared == 2 * 48 + 64
    assert layer_params(m, 0).dense_ffn - layer_params(tiny_gqa(), 0).dense_ffn == 2 * 128 + 64


def test_non_gated_ffn_has_two_matrices() -> None:
    m = tiny_gqa(gated_ffn=False, ffn_bias=True)
    assert layer_params(m, 1).expert == 2 * 64 * 32 + 32 + 64


def test_tiny_mla_by_hand() -> None:
    lp = layer_params(tiny_mla(), 0)
    q_b, kv_b, o = 16 * 4 * (8 + 4), 8 * 4 * (8 + 8), 4 * 8 * 64
    assert lp.attn_sharded == q_b + kv_b + o == 3328
    q_a, kv_a = 64 * 16 + 16, 64 * (8 + 4) + 8  # with their RMSNorms
    assert lp.attn_replicated == q_a + kv_a + 2 * 64 == 1944


def test_tiny_mla_without_q_lora() -> None:
    lp = layer_params(tiny_mla(q_lora_rank=0), 0)
    assert lp.attn_sharded == 64 * 4 * 12 + 8 * 4 * 16 + 4 * 8 * 64 == 5632
    assert lp.attn_replicated == 64 * 12 + 8 + 2 * 64 == 904


def test_layer_out_of_range() -> None:
    with pytest.raises(IndexError):
        layer_params(tiny_gqa(), 3)
    with pytest.raises(IndexError):
        kv_bytes_per_token_per_layer(tiny_gqa(), -1)


# ----------------------------------------------------------------------------------------------
# KV cache and bytes
# ----------------------------------------------------------------------------------------------


def test_kv_bytes_tiny() -> None:
    assert kv_bytes_per_token_per_layer(tiny_gqa(), 0) == 2 * 2 * 16 * 2
    assert kv_bytes_per_token(tiny_gqa(kv_precision="fp8")) == 3 * 2 * 2 * 16
    assert kv_bytes_per_token_per_layer(tiny_mla(), 1) == (8 + 4) * 2


def test_kv_bytes_qwen3_235b() -> None:
    assert kv_bytes_per_token(load_model_preset("qwen3-235b-a22b")) == 94 * 2 * 4 * 128 * 2
    assert 94 * 2 * 4 * 128 * 2 == 192_512


def test_kv_bytes_deepseek_v3_latent() -> None:
    m = load_model_preset("deepseek-v3")
    assert kv_bytes_per_token_per_layer(m, 0) == (512 + 64) * 2
    assert kv_bytes_per_token(m) == 61 * 576 * 2


def test_param_bytes() -> None:
    assert param_bytes(10, "bf16") == 20
    assert param_bytes(10, "fp8") == 10
    assert param_bytes(32, "mxfp4") == 17  # 32 x 4 bits + one 8-bit scale
    assert param_bytes(1, "fp4") == 1  # rounded up


# ----------------------------------------------------------------------------------------------
# Presets against the vendors' published numbers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", model_preset_names())
def test_preset_total_matches_published(name: str) -> None:
    m = load_model_preset(name)
    # Kimi-K2's "1 trillion" is published to one significant figure (we count 1.026T).
    rel = 0.03 if name == "kimi-k2" else 0.01
    assert total_params(m) == pytest.approx(PUBLISHED_TOTAL_PARAMS[name], rel=rel)
    assert check_declared(m) is None


# Published active counts; ours count embedding + LM head (see active_params).
PUBLISHED_ACTIVE = {
    "deepseek-v3": 37e9,
    "qwen3-235b-a22b": 22e9,
    "qwen3-30b-a3b": 3.3e9,
    "mixtral-8x7b": 12.9e9,
    "llama-4-maverick-17b-128e": 17e9,
    "kimi-k2": 32e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_ACTIVE))
def test_preset_active_matches_published(name: str) -> None:
    m = load_model_preset(name)
    assert active_params(m) == pytest.approx(PUBLISHED_ACTIVE[name], rel=0.05)


def test_gpt_oss_active_excludes_embedding_in_model_card() -> None:
    # OpenAI's 5.13B counts the unembedding but not the embedding lookup.
    m = load_model_preset("gpt-oss-120b")
    assert active_params(m) - embedding_params(m) == pytest.approx(5.13e9, rel=0.01)
    assert active_params(m) == pytest.approx(5.13e9 + 201088 * 2880, rel=0.01)


def test_total_and_active_split_sum_up() -> None:
    m = load_model_preset("deepseek-v3")
    layers = [layer_params(m, i) for i in range(m.num_layers)]
    assert sum(lp.total for lp in layers) + embedding_params(m) + lm_head_params(m) == (
        total_params(m)
    )
    assert layers[0].num_experts == 0 and layers[3].num_experts == 256
    assert layers[3].shared == layers[3].expert  # one shared expert of the routed width


# ----------------------------------------------------------------------------------------------
# Declared counts
# ----------------------------------------------------------------------------------------------


def test_declared_count_off_by_more_than_5_percent_warns() -> None:
    computed = total_params(tiny_gqa())
    msg = check_declared(tiny_gqa(declared_total_params=200_000))
    assert msg is not None
    assert "200,000" in msg and f"{computed:,}" in msg


def test_declared_count_within_5_percent_is_fine() -> None:
    assert check_declared(tiny_gqa()) is None
    assert check_declared(tiny_gqa(declared_total_params=int(142784 * 1.04))) is None


def test_preset_with_wrong_declared_count_warns() -> None:
    m = load_model_preset("qwen3-235b-a22b").model_copy(
        update={"declared_total_params": 300_000_000_000}
    )
    msg = check_declared(m)
    assert msg is not None and "300,000,000,000" in msg and "235,0" in msg


# ----------------------------------------------------------------------------------------------
# Properties of generated models
# ----------------------------------------------------------------------------------------------


@st.composite
def small_models(draw: st.DrawFn) -> ModelSpec:
    num_layers = draw(st.integers(1, 6))
    # at least one MoE layer: fewer dense layers than layers
    dense = draw(st.sets(st.integers(0, num_layers - 1), max_size=num_layers - 1))
    kv_heads = draw(st.integers(1, 4))
    heads = kv_heads * draw(st.integers(1, 4))
    if draw(st.booleans()):
        attention = AttentionSpec(
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=draw(st.integers(1, 64)),
            bias=draw(st.booleans()),
            qk_norm=draw(st.booleans()),
            sinks=draw(st.booleans()),
        )
    else:
        nope, rope = draw(st.integers(1, 32)), draw(st.integers(1, 32))
        attention = AttentionSpec(
            kind="mla",
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=nope + rope,
            q_lora_rank=draw(st.integers(0, 64)),
            kv_lora_rank=draw(st.integers(1, 64)),
            qk_nope_head_dim=nope,
            qk_rope_head_dim=rope,
            v_head_dim=draw(st.integers(1, 32)),
        )
    num_experts = draw(st.integers(1, 32))
    return ModelSpec(
        num_layers=num_layers,
        dense_layers=tuple(dense),
        hidden_size=draw(st.integers(1, 256)),
        attention=attention,
        dense_ffn_width=draw(st.integers(1, 512)),
        num_experts=num_experts,
        top_k=draw(st.integers(1, num_experts)),
        expert_ffn_width=draw(st.integers(1, 256)),
        num_shared_experts=draw(st.integers(0, 2)),
        gated_ffn=draw(st.booleans()),
        ffn_bias=draw(st.booleans()),
        router_bias=draw(st.booleans()),
        vocab_size=draw(st.integers(1, 1000)),
        tie_embeddings=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(small_models())
def test_total_at_least_active(m: ModelSpec) -> None:
    assert total_params(m) >= active_params(m) > 0
    if m.top_k == m.num_experts:
        assert total_params(m) == active_params(m)


@settings(max_examples=60, deadline=None)
@given(small_models(), st.integers(1, 16))
def test_total_grows_with_num_experts(m: ModelSpec, extra: int) -> None:
    bigger = m.model_copy(update={"num_experts": m.num_experts + extra})
    assert total_params(bigger) > total_params(m)
    assert active_params(bigger) >= active_params(m)  # only the router grows
