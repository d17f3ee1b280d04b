"""Hardware presets: one :class:`~solver.schema.HardwareSpec` per GPU type, with sources.

Every number here is either a vendor datasheet figure or a documented assumption; docs/hardware.md
gives each value with its source. Conventions used by all presets:

* ``peak_tflops`` is *dense* peak (no 2:4 sparsity). NVIDIA datasheets mark sparse figures with an
  asterisk; those are halved. A precision the hardware cannot run natively is left out, so the cost
  model reads such weights at their own width and computes in the activation precision (W4A16 /
  W8A16; H100 has no FP4 tensor cores: no fp4, MXFP4 weights run BF16 math).
  ``fp32`` is the non-tensor FP32 rate (PyTorch does not use TF32 for fp32 matmuls by default).
* Bandwidths are per GPU, one direction, in GB/s (1e9 bytes/s); capacities in GB (1e9 bytes).
* ``mfu``, ``hbm_efficiency``, ``comm_efficiency``, ``reserved_gb`` and the latencies are one
  documented default for every real GPU, not tuned per model or per GPU.

Instance files name a preset (``hardware: h100-sxm``), override some of its fields
(``hardware: {preset: h100-sxm, gpus_per_node: 4}``) or give every field explicitly;
:func:`resolve_hardware` turns any of these into a validated :class:`HardwareSpec`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from solver.schema import HardwareSpec

__all__ = [
    "DEFAULT_COMM_EFFICIENCY",
    "DEFAULT_HBM_EFFICIENCY",
    "DEFAULT_MFU",
    "DEFAULT_RESERVED_GB",
    "HARDWARE_PRESETS",
    "UnknownHardwareError",
    "hardware_preset_names",
    "load_hardware_preset",
    "resolve_hardware",
]

# ----------------------------------------------------------------------------------------------
# Defaults shared by every real GPU (assumptions; reasons in docs/hardware.md)
# ----------------------------------------------------------------------------------------------

#: Fraction of dense peak that inference GEMMs reach, end to end. Best-case large FP8 GEMMs reach
#: ~78% on H800 (DeepGEMM: up to 1550 of 1979 TFLOPS); whole-model inference also runs skinny,
#: grouped and attention GEMMs, so one conservative 0.5 is used for all real GPUs.
DEFAULT_MFU = 0.5
#: Achievable fraction of peak HBM bandwidth. Streaming read kernels reach ~88-90% of the A100 80GB
#: datasheet figure (1.80 of 2.04 TB/s); decode kernels (GEMV, paged attention) reach less.
DEFAULT_HBM_EFFICIENCY = 0.8
#: Achievable fraction of link bandwidth for collectives. DeepEP reports ~160 GB/s usable of the
#: H800's 200 GB/s NVLink (0.8; 153-158 GB/s measured) and 43 GB/s of a 50 GB/s InfiniBand NIC.
DEFAULT_COMM_EFFICIENCY = 0.8
#: Runtime memory per GPU outside weights, KV cache, activations and communication buffers (which
#: the cost model counts itself): CUDA/HIP context and libraries (~1 GB), CUDA graphs (~1 GB),
#: allocator slack (~1 GB). vLLM's default gpu_memory_utilization=0.9 leaves 10% unused on top
#: (8 GB on an 80 GB GPU); set reserved_gb to 0.1 x hbm_gb to plan like a default vLLM.
DEFAULT_RESERVED_GB = 3.0
#: Latency of one hop, in microseconds (assumptions bracketed by NCCL's tuning model, whose
#: per-step ring latencies are NVLink 0.47/1.9/3.4, PCIe 1.0/2.5/5.7, network 2.7/4.0/9.6 us for
#: its LL/LL128/Simple protocols).
NVLINK_LATENCY_US = 2.0
PCIE_LATENCY_US = 3.0
NETWORK_LATENCY_US = 5.0

_REAL_GPU_DEFAULTS: dict[str, Any] = {
    "mfu": DEFAULT_MFU,
    "hbm_efficiency": DEFAULT_HBM_EFFICIENCY,
    "comm_efficiency": DEFAULT_COMM_EFFICIENCY,
    "reserved_gb": DEFAULT_RESERVED_GB,
}

_SHARED_NOTES = (
    " Defaults shared by all real GPUs (assumptions, see docs/hardware.md): mfu 0.5, "
    "hbm_efficiency 0.8, comm_efficiency 0.8, reserved_gb 3, latency 2 us per NVLink/xGMI hop "
    "(3 us PCIe) and 5 us per network hop."
)

# Hopper SXM (H100, H200, H800) has the same compute; the datasheets list BF16/FP16 1,979,
# FP8/INT8 3,958 TFLOPS with sparsity (halved here) and FP32 67 TFLOPS.
_HOPPER_SXM_TFLOPS: dict[str, float] = {
    "fp32": 67.0,
    "bf16": 989.5,
    "fp16": 989.5,
    "fp8": 1979.0,
    "int8": 1979.0,
}


def _preset(**fields: Any) -> HardwareSpec:
    return HardwareSpec(**{**_REAL_GPU_DEFAULTS, **fields})


HARDWARE_PRESETS: dict[str, HardwareSpec] = {
    "h100-sxm": _preset(
        name="h100-sxm",
        peak_tflops=dict(_HOPPER_SXM_TFLOPS),
        hbm_gb=80.0,
        hbm_tb_s=3.35,
        gpus_per_node=8,
        intra_node_gb_s=450.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA H100 SXM5 in an HGX/DGX H100 8-GPU node. Sources: NVIDIA H100 Tensor Core "
            "GPU datasheet, H100 SXM column (FP32 67; BF16/FP16 1,979* and FP8/INT8 3,958* "
            "TFLOPS, *with sparsity, halved to dense; 80 GB HBM3; 3.35 TB/s; NVLink 900 GB/s "
            "bidirectional = 450 GB/s per direction). No FP4 tensor cores: fp4/mxfp4 weights are "
            "dequantised and multiplied in BF16. Inter-node: DGX H100 datasheet, 8x ConnectX-7 "
            "400 Gb/s (one NIC per GPU) = 50 GB/s." + _SHARED_NOTES
        ),
    ),
    "h200-sxm": _preset(
        name="h200-sxm",
        peak_tflops=dict(_HOPPER_SXM_TFLOPS),
        hbm_gb=141.0,
        hbm_tb_s=4.8,
        gpus_per_node=8,
        intra_node_gb_s=450.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA H200 SXM in an HGX/DGX H200 8-GPU node. Sources: NVIDIA H200 Tensor Core "
            "GPU datasheet, H200 SXM column (same compute as H100 SXM: FP32 67; BF16/FP16 1,979* "
            "and FP8/INT8 3,958* TFLOPS, *with sparsity, halved; 141 GB HBM3e; 4.8 TB/s; NVLink "
            "900 GB/s bidirectional = 450 GB/s per direction). No FP4 tensor cores. Inter-node: "
            "DGX H200 datasheet, 8x ConnectX-7 400 Gb/s (one NIC per GPU) = 50 GB/s."
            + _SHARED_NOTES
        ),
    ),
    "h800-sxm": _preset(
        name="h800-sxm",
        peak_tflops=dict(_HOPPER_SXM_TFLOPS),
        hbm_gb=80.0,
        hbm_tb_s=3.35,
        gpus_per_node=8,
        intra_node_gb_s=200.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA H800 SXM5 (export variant of H100 with reduced NVLink) in an 8-GPU node. "
            "Sources: NVIDIA H800 Tensor Core GPU datasheet, SXM column (FP32 67; BF16/FP16 "
            "1,979* and FP8/INT8 3,958* TFLOPS, *with sparsity, halved; 80 GB HBM3; 3.35 TB/s; "
            "NVLink 400 GB/s bidirectional = 200 GB/s per direction). No FP4 tensor cores. "
            "Inter-node: DeepEP README (V1 performance section) and the DeepSeek-V3 technical "
            "report: each H800 has one ConnectX-7 400 Gb/s InfiniBand NIC (~50 GB/s); DeepEP "
            "measures ~160 GB/s usable NVLink." + _SHARED_NOTES
        ),
    ),
    "a100-sxm-80gb": _preset(
        name="a100-sxm-80gb",
        peak_tflops={"fp32": 19.5, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        hbm_gb=80.0,
        hbm_tb_s=2.039,
        gpus_per_node=8,
        intra_node_gb_s=300.0,
        inter_node_gb_s=25.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA A100 80GB SXM4 in an HGX/DGX A100 8-GPU node. Sources: NVIDIA A100 Tensor "
            "Core GPU datasheet, A100 80GB SXM column (FP32 19.5; BF16/FP16 312 and INT8 624 "
            "dense TFLOPS/TOPS; 80 GB HBM2e; 2,039 GB/s; NVLink 600 GB/s bidirectional = 300 "
            "GB/s per direction). No FP8 or FP4 tensor cores: fp8 runs at the bf16/fp16 rate "
            "(INT8 tensor cores cannot run FP8 math). Inter-node: DGX A100 datasheet, 8x "
            "ConnectX-6 200 Gb/s HDR InfiniBand (one per GPU) = 25 GB/s." + _SHARED_NOTES
        ),
    ),
    "b200": _preset(
        name="b200",
        peak_tflops={
            "fp32": 75.0,
            "bf16": 2250.0,
            "fp16": 2250.0,
            "fp8": 4500.0,
            "int8": 4500.0,
            "fp4": 9000.0,
            "mxfp4": 9000.0,
        },
        hbm_gb=180.0,
        hbm_tb_s=8.0,
        gpus_per_node=8,
        intra_node_gb_s=900.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA B200 in an HGX/DGX B200 8-GPU node (1,000 W). Sources: NVIDIA HGX B200 "
            "specifications (8-GPU totals with sparsity: FP4 144 PF, FP8/FP6 72 PF, INT8 72 POPS, "
            "FP16/BF16 36 PF; FP32 600 TF), divided by 8 GPUs and by 2 for dense: FP4 9,000, "
            "FP8/INT8 4,500, BF16/FP16 2,250, FP32 75 TFLOPS. fp4 and mxfp4 are both native on "
            "5th-gen tensor cores. Memory: DGX B200 datasheet, 1,440 GB and 64 TB/s per 8 GPUs = "
            "180 GB and 8 TB/s per GPU (192 GB is the full-die figure from NVIDIA's GTC 2024 "
            "launch; the HGX B200 table also lists 7.7 TB/s per GPU). NVLink 5: 1.8 TB/s "
            "bidirectional = 900 GB/s per direction. Inter-node: DGX B200 datasheet, 8x "
            "ConnectX-7 400 Gb/s (one per GPU) = 50 GB/s." + _SHARED_NOTES
        ),
    ),
    "mi300x": _preset(
        name="mi300x",
        peak_tflops={
            "fp32": 163.4,
            "bf16": 1307.4,
            "fp16": 1307.4,
            "fp8": 2614.9,
            "int8": 2614.9,
        },
        hbm_gb=192.0,
        hbm_tb_s=5.3,
        gpus_per_node=8,
        intra_node_gb_s=448.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "AMD Instinct MI300X (OAM) in an 8-GPU platform. Sources: AMD Instinct MI300X "
            "accelerator data sheet (dense: FP32 163.4, FP16/BF16 1,307.4, FP8 2,614.9 TFLOPS, "
            "INT8 2,614.9 TOPS; 192 GB HBM3; 5.3 TB/s) and the AMD CDNA 3 white paper (7 Infinity "
            "Fabric links per GPU, 128 GB/s bidirectional each = 64 GB/s per direction; 7 x 64 = "
            "448 GB/s per direction to all peers). The 8 GPUs form a full mesh without a switch: "
            "448 GB/s holds only for groups spanning all 8 GPUs; a group of g GPUs gets about "
            "(g-1) x 64 GB/s (64 GB/s for g=2), so override intra_node_gb_s for small TP/EP "
            "groups. No FP4 (CDNA 3). Inter-node: Microsoft Azure ND MI300X v5 specifications, "
            "8x 400 Gb/s NDR InfiniBand per 8 GPUs = 50 GB/s per GPU." + _SHARED_NOTES
        ),
    ),
    "l40s": _preset(
        name="l40s",
        peak_tflops={
            "fp32": 91.6,
            "bf16": 362.05,
            "fp16": 362.05,
            "fp8": 733.0,
            "int8": 733.0,
        },
        hbm_gb=48.0,
        hbm_tb_s=0.864,
        gpus_per_node=8,
        intra_node_gb_s=32.0,
        inter_node_gb_s=25.0,
        intra_node_latency_us=PCIE_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        notes=(
            "NVIDIA L40S (PCIe card, GDDR6, no NVLink). Sources: NVIDIA L40S datasheet (FP32 "
            "91.6; BF16/FP16 362.05, FP8 733 TFLOPS and INT8 733 TOPS dense; 48 GB GDDR6; 864 "
            "GB/s; PCIe Gen4 x16 64 GB/s bidirectional = 32 GB/s per direction). No FP4 tensor "
            "cores. ASSUMPTIONS: 8 cards per server, all GPU-to-GPU traffic over PCIe Gen4 at 32 "
            "GB/s (crossing CPU sockets is slower); one 400 Gb/s NIC per two GPUs, as in NVIDIA's "
            "PCIe-optimized 2-8-5 enterprise reference configuration, = 25 GB/s per GPU. "
            "'hbm_gb'/'hbm_tb_s' hold the GDDR6 figures." + _SHARED_NOTES
        ),
    ),
    "seed-card": HardwareSpec(
        name="seed-card",
        peak_tflops={"bf16": 400.0, "fp16": 400.0, "fp8": 400.0},
        mfu=0.6,
        hbm_gb=64.0,
        hbm_tb_s=1.8,
        hbm_efficiency=0.8,
        gpus_per_node=8,
        intra_node_gb_s=400.0,
        inter_node_gb_s=50.0,
        intra_node_latency_us=NVLINK_LATENCY_US,
        inter_node_latency_us=NETWORK_LATENCY_US,
        comm_efficiency=DEFAULT_COMM_EFFICIENCY,
        reserved_gb=2.0,
        notes=(
            "The card of the hand-written seed plans (shared/seeds/*.txt): 400 TFLOPS, 60% MFU, "
            "64 GB, 1.8 TB/s at 80% utilization. The seeds state one compute figure without a "
            "precision; it is used for bf16, fp16 and fp8 alike (fp32 is not stated, so it is "
            "not listed). ASSUMPTIONS (the seeds say nothing about them): 8 GPUs per node, "
            "NVLink-class 400 GB/s per direction inside a node, 50 GB/s per GPU between nodes "
            "(one 400 Gb/s NIC per GPU), latency 2 us intra-node and 5 us inter-node, "
            "comm_efficiency 0.8, 2 GB reserved for the runtime."
        ),
    ),
}


class UnknownHardwareError(ValueError):
    """A hardware preset name that does not exist. The message lists the valid names."""

    def __init__(self, name: str) -> None:
        names = hardware_preset_names()
        close = difflib.get_close_matches(str(name).strip().lower(), names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown hardware preset '{name}'.{hint} Valid names: {', '.join(names)}")
        self.name = name
        self.valid_names = names


def hardware_preset_names() -> list[str]:
    """Names of the bundled hardware presets, in a stable order."""
    return list(HARDWARE_PRESETS)


def load_hardware_preset(name: str) -> HardwareSpec:
    """The preset called ``name`` (case and surrounding spaces ignored)."""
    if not isinstance(name, str):
        raise UnknownHardwareError(repr(name))
    spec = HARDWARE_PRESETS.get(name.strip().lower())
    if spec is None:
        raise UnknownHardwareError(name)
    return spec


_NOTES_MAX = 4000  # HardwareSpec.notes max_length


def _describe_overrides(overrides: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted(overrides):
        value = overrides[key]
        parts.append(f"{key}={value}" if key != "notes" else "notes")
    return ", ".join(parts)


def resolve_hardware(value: str | Mapping[str, Any] | HardwareSpec) -> HardwareSpec:
    """Turn an instance file's ``hardware`` entry into a validated :class:`HardwareSpec`.

    * ``"h100-sxm"``: a preset name.
    * ``{"preset": "h100-sxm", "gpus_per_node": 4, ...}``: a preset with some fields overridden.
      ``peak_tflops`` overrides merge into the preset's table per precision (``{"fp4": 100}`` adds
      one precision and keeps the others). The result is validated again, so an override that
      breaks a rule (``reserved_gb`` >= ``hbm_gb``) is rejected.
    * ``{...}`` without ``preset``: every required :class:`HardwareSpec` field explicitly.

    Raises :class:`UnknownHardwareError` for an unknown preset name and
    :class:`pydantic.ValidationError` (a ``ValueError``) for invalid fields.
    """
    if isinstance(value, HardwareSpec):
        return value
    if isinstance(value, str):
        return load_hardware_preset(value)
    if not isinstance(value, Mapping):
        raise ValueError(
            "hardware must be a preset name or a mapping of HardwareSpec fields, "
            f"not {type(value).__name__}"
        )
    if "preset" not in value:
        return HardwareSpec.model_validate(dict(value))

    preset_name = value["preset"]
    if not isinstance(preset_name, str):
        raise ValueError(f"hardware.preset must be a preset name (string), not {preset_name!r}")
    base = load_hardware_preset(preset_name)
    overrides = {k: v for k, v in value.items() if k != "preset"}
    if not overrides:
        return base

    merged: dict[str, Any] = base.model_dump()
    for key, new in overrides.items():
        if key == "peak_tflops" and isinstance(new, Mapping):
            merged[key] = {**merged[key], **new}
        else:
            merged[key] = new
    if "name" not in overrides:
        merged["name"] = f"{base.name} (modified)"
    if "notes" not in overrides:
        note = f" Overridden by the instance: {_describe_overrides(overrides)}."[:_NOTES_MAX]
        merged["notes"] = base.notes[: _NOTES_MAX - len(note)] + note
    return HardwareSpec.model_validate(merged)
