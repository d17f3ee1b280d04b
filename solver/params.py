"""Parameter counts and KV-cache size of a :class:`~solver.schema.ModelSpec`.

Every count is derived from the architecture alone; nothing here trusts a declared total. The
layout follows the Hugging Face reference implementations of each family:

- GQA attention: ``q: hidden×(heads·head_dim)``, ``k, v: hidden×(kv_heads·head_dim)``,
  ``o: (heads·head_dim)×hidden``, plus their output-sized biases when ``attention.bias``.
- MLA (DeepSeek-V2/V3): ``q_a: hidden×q_lora_rank`` (+ its RMSNorm),
  ``q_b: q_lora_rank×heads·(nope+rope)`` (``q: hidden×heads·(nope+rope)`` when ``q_lora_rank`` is
  0), ``kv_a: hidden×(kv_lora_rank+rope)`` (+ its RMSNorm), ``kv_b: kv_lora_rank×heads·(nope+v)``,
  ``o: heads·v×hidden``.
- FFN: gated (SwiGLU) = 3 matrices ``hidden×width``, else 2; biases when ``ffn_bias``.
- Router: ``hidden×num_experts`` (+ ``num_experts`` bias when ``router_bias``).
- Two RMSNorms per layer (``hidden`` each), one final norm before the LM head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.schema import BYTES_PER_ELEMENT, ModelSpec

#: Relative gap between a declared and the computed total above which :func:`check_declared` warns.
DECLARED_TOLERANCE = 0.05


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one decoder layer, split by how tensor/expert parallelism shards them."""

    attn_sharded: int
    """Attention params split over TP ranks: Q/K/V/O (MLA: q_b or q, kv_b, o) incl. biases."""
    attn_replicated: int
    """Attention params every TP rank holds whole: the layer's two norms, qk-norm weights,
    sinks, MLA down-projections (q_a, kv_a_proj_with_mqa) and their norms."""
    dense_ffn: int
    """Dense FFN params (0 on MoE layers); split over TP."""
    router: int
    """Router params incl. bias (0 on dense layers); replicated."""
    expert: int
    """Params of ONE routed expert incl. biases (0 on dense layers)."""
    num_experts: int
    """Routed experts in this layer (0 on dense layers)."""
    shared: int
    """Params of ALL shared experts of this layer (0 if none or on a dense layer)."""
    top_k: int
    """Routed experts each token uses in this layer (0 on dense layers)."""

    @property
    def attention(self) -> int:
        return self.attn_sharded + self.attn_replicated

    @property
    def total(self) -> int:
        routed = self.expert * self.num_experts
        return self.attention + self.dense_ffn + self.router + routed + self.shared

    @property
    def active(self) -> int:
        """Params one token touches: everything except the routed experts it is not sent to."""
        routed = self.expert * self.top_k
        return self.attention + self.dense_ffn + self.router + routed + self.shared


def ffn_params(hidden: int, width: int, *, gated: bool, bias: bool) -> int:
    """One FFN (dense, routed or shared expert): gate/up/down (gated) or up/down matrices."""
    matrices = 3 if gated else 2
    n = matrices * hidden * width
    if bias:
        n += (2 * width if gated else width) + hidden  # gate/up biases + down bias
    return n


def _gqa_attention(model: ModelSpec) -> tuple[int, int]:
    a, h = model.attention, model.hidden_size
    q_out = a.num_heads * a.head_dim
    kv_out = a.num_kv_heads * a.head_dim
    sharded = h * q_out + 2 * h * kv_out + q_out * h
    if a.bias:
        sharded += q_out + 2 * kv_out + h
    return sharded, 0


def _mla_attention(model: ModelSpec) -> tuple[int, int]:
    a, h = model.attention, model.hidden_size
    q_out = a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
    kv_a_out = a.kv_lora_rank + a.qk_rope_head_dim
    sharded = (
        a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)  # kv_b
        + a.num_heads * a.v_head_dim * h  # o
    )
    replicated = h * kv_a_out + a.kv_lora_rank  # kv_a_proj_with_mqa + kv_a_layernorm
    if a.q_lora_rank:
        sharded += a.q_lora_rank * q_out  # q_b
        replicated += h * a.q_lora_rank + a.q_lora_rank  # q_a + q_a_layernorm
    else:
        sharded += h * q_out  # q
    if a.bias:
        # DeepSeek's modelling code puts attention_bias on q_a, kv_a and o only.
        replicated += kv_a_out + (a.q_lora_rank if a.q_lora_rank else 0)
        sharded += h
    return sharded, replicated


def layer_params(model: ModelSpec, layer: int) -> LayerParams:
    """Parameter counts of decoder layer ``layer`` (0-based)."""
    if not 0 <= layer < model.num_layers:
        raise IndexError(f"layer {layer} out of range [0, {model.num_layers - 1}]")
    a, h = model.attention, model.hidden_size
    sharded, replicated = _mla_attention(model) if a.kind == "mla" else _gqa_attention(model)
    replicated += 2 * h  # input and post-attention RMSNorm
    if a.qk_norm:
        replicated += 2 * a.qk_head_dim  # one q_norm and one k_norm, shared over heads
    if a.sinks:
        replicated += a.num_heads

    if layer in model.dense_layers:
        dense = ffn_params(h, model.dense_ffn_width, gated=model.gated_ffn, bias=model.ffn_bias)
        return LayerParams(sharded, replicated, dense, 0, 0, 0, 0, 0)

    router = h * model.num_experts + (model.num_experts if model.router_bias else 0)
    expert = ffn_params(h, model.expert_ffn_width, gated=model.gated_ffn, bias=model.ffn_bias)
    shared = model.num_shared_experts * ffn_params(
        h, model.shared_width, gated=model.gated_ffn, bias=model.ffn_bias
    )
    return LayerParams(
        attn_sharded=sharded,
        attn_replicated=replicated,
        dense_ffn=0,
        router=router,
        expert=expert,
        num_experts=model.num_experts,
        shared=shared,
        top_k=model.top_k,
    )


def embedding_params(model: ModelSpec) -> int:
    """Input embedding matrix: ``vocab × hidden``."""
    return model.vocab_size * model.hidden_size


def lm_head_params(model: ModelSpec) -> int:
    """Final norm plus the output projection ``vocab × hidden``.

    With tied embeddings the projection *is* the embedding matrix, so only the final norm is
    counted here (the matrix is counted once, in :func:`embedding_params`).
    """
    head = 0 if model.tie_embeddings else model.vocab_size * model.hidden_size
    return head + model.hidden_size


def total_params(model: ModelSpec) -> int:
    """All parameters of the main model: layers, embedding, final norm and LM head (tied ones
    once). Multi-token-prediction modules are not part of a ModelSpec and never counted."""
    layers = sum(layer_params(model, i).total for i in range(model.num_layers))
    return layers + embedding_params(model) + lm_head_params(model)


def active_params(model: ModelSpec) -> int:
    """Parameters one token uses: every layer's active params plus the embedding and LM head.

    Convention: we count both the embedding and the LM head (as Mistral does for Mixtral's 12.9B
    and DeepSeek for V3's 37B). Some vendors leave the embedding out because a lookup does no
    matmul: OpenAI's gpt-oss-120b "5.13B active" is ``active_params - embedding_params``.
    """
    layers = sum(layer_params(model, i).active for i in range(model.num_layers))
    return layers + embedding_params(model) + lm_head_params(model)


def kv_bytes_per_token_per_layer(model: ModelSpec, layer: int) -> float:
    """KV-cache bytes one token occupies in one layer (whole model, before any sharding).

    GQA keeps K and V per KV head: ``2 · kv_heads · head_dim``. MLA keeps the compressed latent and
    the shared rotary key, as vLLM and SGLang do: ``kv_lora_rank + qk_rope_head_dim``.
    """
    if not 0 <= layer < model.num_layers:
        raise IndexError(f"layer {layer} out of range [0, {model.num_layers - 1}]")
    a = model.attention
    bytes_per_element = BYTES_PER_ELEMENT[model.kv_precision]
    if a.kind == "mla":
        return (a.kv_lora_rank + a.qk_rope_head_dim) * bytes_per_element
    return 2 * a.num_kv_heads * a.head_dim * bytes_per_element


def kv_bytes_per_token(model: ModelSpec) -> float:
    """KV-cache bytes one token occupies, summed over all layers."""
    return sum(kv_bytes_per_token_per_layer(model, i) for i in range(model.num_layers))


def param_bytes(n_params: int, precision: str) -> int:
    """Bytes of ``n_params`` weights stored at ``precision`` (rounded up)."""
    return math.ceil(n_params * BYTES_PER_ELEMENT[precision])


def check_declared(model: ModelSpec) -> str | None:
    """A warning if the declared total differs from the architecture's by more than 5%."""
    declared = model.declared_total_params
    if declared is None:
        return None
    computed = total_params(model)
    gap = abs(declared - computed) / computed
    if gap <= DECLARED_TOLERANCE:
        return None
    return (
        f"model '{model.name}': declared_total_params {declared:,} differs from the "
        f"{computed:,} computed from the architecture by {gap:.1%} (tolerance "
        f"{DECLARED_TOLERANCE:.0%}); the computed count is used"
    )
