"""The plan's expert placement in the engines' own formats, and back.

A plan's placement gives, per MoE layer, the experts in the slots of each EP rank
(``ranks[r]``, one entry per slot). Both formats below list *physical slots* in rank order:
slot ``p`` lives on EP rank ``p // slots_per_rank``, so concatenating ``ranks[0], ranks[1], ...``
is the engines' slot list, and cutting it into ``ep`` equal runs gives the ranks back.

- SGLang ``--init-expert-location FILE.json``: ``{"physical_to_logical_map": [[...] per layer]}``
  with one row for *every* decoder layer (SGLang sizes the map by ``num_hidden_layers``; rows of
  dense layers are never read, and get SGLang's own trivial row ``p % experts``).
  Source: sglang 0.5.3, ``srt/eplb/expert_location.py`` (``compute_initial_expert_location_
  metadata``, ``init_by_mapping``, ``init_trivial``).
- TensorRT-LLM ``moe_config.load_balancer`` YAML: ``num_slots`` and ``initial_global_assignments``
  ``{layer index: [expert of each slot]}`` for the MoE layers, ``layer_updates_per_iter: 0`` (the
  placement stays as planned). Source: ``tensorrt_llm/llmapi/llm_args.py``
  (``MoeLoadBalancerConfig``: assignments of length ``num_slots``, rank ``r`` owns slots
  ``r·num_slots/ep_size ...``).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from solver.schema import LayerPlacement, ModelSpec


def slot_row(ranks: tuple[tuple[int, ...], ...]) -> list[int]:
    """Physical slots of one layer in rank order."""
    return [e for rank in ranks for e in rank]


def ranks_of_row(row: list[int], ep: int) -> tuple[tuple[int, ...], ...]:
    """Cut a layer's slot list into the ``ep`` ranks' slots."""
    if ep <= 0 or len(row) % ep:
        raise ValueError(f"{len(row)} slots do not split over {ep} EP ranks")
    per = len(row) // ep
    return tuple(tuple(int(e) for e in row[r * per:(r + 1) * per]) for r in range(ep))


def sglang_expert_location(model: ModelSpec, placement: tuple[LayerPlacement, ...]) -> str:
    """The JSON SGLang reads with ``--init-expert-location``."""
    by_layer = {p.layer: slot_row(p.ranks) for p in placement}
    slots = {len(row) for row in by_layer.values()}
    if len(slots) != 1:
        raise ValueError("every MoE layer must have the same number of slots")
    n = slots.pop()
    rows = [by_layer.get(layer, [p % model.num_experts for p in range(n)])
            for layer in range(model.num_layers)]
    return json.dumps({"physical_to_logical_map": rows}, separators=(",", ":")) + "\n"


def parse_sglang_expert_location(text: str, model: ModelSpec, ep: int
                                 ) -> tuple[LayerPlacement, ...]:
    """The MoE layers' placement from SGLang's JSON."""
    rows = json.loads(text)["physical_to_logical_map"]
    if len(rows) != model.num_layers:
        raise ValueError(f"{len(rows)} rows for a model of {model.num_layers} layers")
    return tuple(LayerPlacement(layer=layer, ranks=ranks_of_row(rows[layer], ep))
                 for layer in model.moe_layers)


def trtllm_load_balancer(placement: tuple[LayerPlacement, ...]) -> str:
    """The YAML ``moe_config.load_balancer`` names."""
    rows = {p.layer: slot_row(p.ranks) for p in placement}
    doc: dict[str, Any] = {
        "num_slots": len(next(iter(rows.values()))),
        "layer_updates_per_iter": 0,
        "initial_global_assignments": rows,
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)


def parse_trtllm_load_balancer(text: str, ep: int) -> tuple[LayerPlacement, ...]:
    doc = yaml.safe_load(text)
    num_slots = doc["num_slots"]
    out = []
    for layer, row in sorted(doc["initial_global_assignments"].items()):
        if len(row) != num_slots:
            raise ValueError(f"layer {layer}: {len(row)} slots, num_slots is {num_slots}")
        out.append(LayerPlacement(layer=int(layer), ranks=ranks_of_row(row, ep)))
    return tuple(out)
