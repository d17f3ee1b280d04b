"""Time of one kernel or collective on one GPU: measured models, or the roofline.

Every function takes numpy arrays (one entry per batch size the caller evaluates) and returns
seconds as an array of the same shape, computed element by element, so a plan costed alone and
the same plan costed inside a planner's vector of batch sizes get bit-identical numbers.

With a measured model (:mod:`solver.calibration`) a compute op takes ``calls · floor + ideal /
efficiency(x)``, where ``ideal = max(FLOPs / peak, bytes / HBM peak)`` at datasheet peaks; without
one it takes the roofline with the preset's flat efficiencies, ``max(FLOPs / (peak · mfu), bytes /
(HBM peak · hbm_efficiency))``. Either way no op beats the datasheet. A collective takes its
measured time against message bytes, or ``latency + bytes / (link bandwidth · efficiency)``.
docs/cost-model.md states each formula and its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.calibration import Calibration, load_calibration
from solver.schema import HardwareSpec

#: Precisions a narrow or integer weight format computes in when the GPU has no units for it:
#: weight-only quantisation (W4A16, W8A16) dequantises into the activation precision.
_FLOAT_ACTIVATIONS = ("bf16", "fp16", "fp32")

ROOFLINE = "roofline"


def math_precision(hw: HardwareSpec, weight: str, activation: str) -> str:
    """The precision a GEMM with ``weight`` weights computes in on ``hw``: the weight precision
    where the GPU has tensor cores for it (FP8 on Hopper: W8A8), otherwise the activation
    precision with the weights dequantised on the fly (MXFP4 or FP8 on A100: BF16 math, 4- or
    8-bit weight reads)."""
    if weight in hw.peak_tflops:
        return weight
    for p in (activation, *_FLOAT_ACTIVATIONS):
        if p in hw.peak_tflops:
            return p
    return min(hw.peak_tflops, key=lambda p: hw.peak_tflops[p])


def weight_format(hw: HardwareSpec, weight: str, block: int | None, activation: str) -> str:
    """The kernel family a weight precision runs as, naming the measured model: ``bf16``,
    ``fp8_block`` (128×128 scales), ``fp8_per_tensor``, ``nvfp4`` (FP4 tensor cores) or
    ``w4a16_mxfp4`` (MXFP4 weights, 16-bit math). Other formats have no measured model."""
    math = math_precision(hw, weight, activation)
    if weight in ("bf16", "fp16"):
        return "bf16"
    if weight == "fp8":
        return ("fp8_block" if block else "fp8_per_tensor") if math == "fp8" else "w8a16"
    if weight in ("fp4", "mxfp4"):
        return "nvfp4" if math in ("fp4", "mxfp4") else "w4a16_mxfp4"
    return weight


@dataclass(frozen=True)
class Link:
    """One link class (intra- or inter-node): bandwidth per GPU in byte/s at the datasheet peak,
    latency of one hop in seconds, and the flat efficiency used without a measured model."""

    bw: float
    lat: float
    efficiency: float
    name: str


#: Element-wise and normalisation kernels (residual add + RMSNorm) have no measured table;
#: aiconfigurator prices each as ``bytes / (0.8 · HBM) + 3 µs`` (aiconfigurator 0.12,
#: ``mem_op``), which moeplan uses where it uses the measured data.
ELEMENTWISE_FLOOR_S = 3e-6
ELEMENTWISE_HBM_EFFICIENCY = 0.8


class Kernels:
    """Op timings of one GPU type."""

    def __init__(self, hw: HardwareSpec, calibration: Calibration | None | bool = True):
        self.hw = hw
        if calibration is True:
            calibration = load_calibration(hw.name)
        self.cal: Calibration | None = calibration or None
        self.hbm = hw.hbm_tb_s * 1e12
        self.intra = Link(hw.intra_node_gb_s * 1e9, hw.intra_node_latency_us * 1e-6,
                          hw.comm_efficiency, "intra")
        self.inter = Link(hw.inter_node_gb_s * 1e9, hw.inter_node_latency_us * 1e-6,
                          hw.comm_efficiency, "inter")

    # -- sources --------------------------------------------------------------------------------

    def source(self, key: str) -> str:
        """Where the time of measured-model ``key`` comes from, for the breakdown."""
        if self.cal is not None:
            model = self.cal.compute.get(key) or self.cal.comm.get(key)
            if model is not None:
                return model.label
        if key.startswith("comm."):
            return f"{ROOFLINE} (link efficiency {self.hw.comm_efficiency:g})"
        return f"{ROOFLINE} (mfu {self.hw.mfu:g}, hbm efficiency {self.hw.hbm_efficiency:g})"

    def peak_flops(self, precision: str) -> float:
        return self.hw.peak_tflops[precision] * 1e12

    # -- compute ops ----------------------------------------------------------------------------

    def _op(self, key: str, flops: np.ndarray, bytes_: np.ndarray, x: np.ndarray,
            precision: str, calls: float) -> np.ndarray:
        peak = self.peak_flops(precision)
        model = None if self.cal is None else self.cal.compute.get(key)
        if model is None:
            return np.maximum(flops / (peak * self.hw.mfu),
                              bytes_ / (self.hbm * self.hw.hbm_efficiency))
        return model.time(np.maximum(flops / peak, bytes_ / self.hbm), x, calls)

    def gemm(self, tokens: np.ndarray, params: float, weight_bytes: float, act_bytes: float,
             io_width: float, precision: str, fmt: str, calls: float = 1) -> np.ndarray:
        """``tokens × params`` dense GEMMs (``calls`` kernels, ``params`` weights in all on this
        GPU): reads the weights once, streams ``io_width`` activations per token."""
        tokens = np.asarray(tokens, dtype=np.float64)
        flops = 2.0 * tokens * params
        bytes_ = params * weight_bytes + tokens * io_width * act_bytes
        return np.where(tokens > 0,
                        self._op(f"gemm.{fmt}", flops, bytes_, tokens, precision, calls), 0.0)

    def grouped_gemm(self, routed: np.ndarray, touched: np.ndarray, params_per_expert: float,
                     weight_bytes: float, act_bytes: float, io_width: float,
                     precision: str, fmt: str) -> np.ndarray:
        """One fused MoE call on one GPU: ``routed`` token copies over ``touched`` distinct
        experts of ``params_per_expert`` weights each; efficiency follows tokens per expert."""
        routed = np.asarray(routed, dtype=np.float64)
        touched = np.maximum(np.asarray(touched, dtype=np.float64), 1e-12)
        flops = 2.0 * routed * params_per_expert
        bytes_ = touched * params_per_expert * weight_bytes + routed * io_width * act_bytes
        return np.where(routed > 0, self._op(f"moe.{fmt}.balanced", flops, bytes_,
                                             routed / touched, precision, 1), 0.0)

    def attention(self, key: str, flops: np.ndarray, bytes_: np.ndarray, x: np.ndarray,
                  precision: str, *, sequences: np.ndarray | None = None, kv_heads: float = 1,
                  group: float = 1) -> np.ndarray:
        """Attention core (``QKᵀ`` and ``PV``), one kernel; ``x`` indexes the measured model
        (sequence length in prefill, KV bytes read in decode). A decode call also passes its
        ``sequences``, the ``kv_heads`` on the GPU and the query ``group`` size (heads per KV
        head; MLA: heads on the GPU), which the measured decode models price."""
        flops = np.asarray(flops, dtype=np.float64)
        bytes_ = np.asarray(bytes_, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        model = None if self.cal is None else self.cal.compute.get(key)
        if model is not None and sequences is not None:
            ideal = np.maximum(flops / self.peak_flops(precision), bytes_ / self.hbm)
            return np.where(flops > 0, model.time_decode(ideal, x, sequences, kv_heads, group),
                            0.0)
        return np.where(flops > 0, self._op(key, flops, bytes_, x, precision, 1), 0.0)

    def elementwise(self, bytes_: np.ndarray, calls: float) -> np.ndarray:
        """``calls`` element-wise kernels moving ``bytes_`` in all (norms, residual adds)."""
        bytes_ = np.asarray(bytes_, dtype=np.float64)
        if self.cal is None:
            return bytes_ / (self.hbm * self.hw.hbm_efficiency)
        return np.where(bytes_ > 0, calls * ELEMENTWISE_FLOOR_S
                        + bytes_ / (self.hbm * ELEMENTWISE_HBM_EFFICIENCY), 0.0)

    def elementwise_source(self) -> str:
        if self.cal is None:
            return f"{ROOFLINE} (hbm efficiency {self.hw.hbm_efficiency:g})"
        return (f"aiconfigurator's rule for unmeasured element-wise ops: bytes / "
                f"({ELEMENTWISE_HBM_EFFICIENCY:g} HBM) + {ELEMENTWISE_FLOOR_S * 1e6:g} µs per op")

    def memory_read(self, bytes_: np.ndarray) -> np.ndarray:
        """A pure HBM read (embedding lookup)."""
        eff = self.hw.hbm_efficiency if self.cal is None else 1.0
        return np.asarray(bytes_, dtype=np.float64) / (self.hbm * eff)

    # -- communication --------------------------------------------------------------------------

    def _link(self, link: Link, bytes_: np.ndarray, hops: float) -> np.ndarray:
        return hops * link.lat + bytes_ / (link.bw * link.efficiency)

    def all_reduce_key(self, group: int, link: Link) -> str:
        return f"comm.custom_allreduce.n{group}" if link.name == "intra" else \
            f"comm.nccl.all_reduce.n{group}.inter"

    def all_reduce(self, bytes_: np.ndarray, group: int, link: Link) -> np.ndarray:
        """All-reduce of ``bytes_`` over ``group`` GPUs: measured (TensorRT-LLM's custom
        all-reduce inside a node), or a ring: ``2(p-1)`` steps of ``bytes/p`` (NCCL's ring;
        Patarasuk & Yuan 2009)."""
        bytes_ = np.asarray(bytes_, dtype=np.float64)
        if group <= 1:
            return np.zeros_like(bytes_)
        model = None if self.cal is None else self.cal.comm.get(self.all_reduce_key(group, link))
        if model is not None:
            return np.where(bytes_ > 0, model.time(bytes_), 0.0)
        volume = 2.0 * (group - 1) / group * bytes_
        return np.where(bytes_ > 0, self._link(link, volume, 2.0 * (group - 1)), 0.0)

    def all_to_all_key(self, link: Link, mode: str, phase: str) -> str:
        return f"comm.a2a.{link.name}.{mode}.{phase}"

    def all_to_all(self, recv_bytes: np.ndarray, link: Link, mode: str, phase: str
                   ) -> np.ndarray:
        """One expert-parallel dispatch or combine, bounded by the busiest receiver's bytes:
        measured DeepEP (``mode`` ``ll`` for decode, ``normal`` for prefill), or one hop at link
        rate."""
        recv_bytes = np.asarray(recv_bytes, dtype=np.float64)
        model = None if self.cal is None else self.cal.comm.get(
            self.all_to_all_key(link, mode, phase))
        if model is not None:
            return np.where(recv_bytes > 0, model.time(recv_bytes), 0.0)
        return np.where(recv_bytes > 0, self._link(link, recv_bytes, 1.0), 0.0)

    def deepep(self, families: tuple[str, ...], mode: str, phase: str, dtype: str, nodes: int
               ) -> tuple[str, object] | None:
        """The measured DeepEP model (key, model) closest to the call, among the same kernels
        (``ll``/``normal``) and phase: measured across at least ``nodes`` nodes (else the widest
        measurement: inter-node bandwidth per GPU does not grow with more nodes), then in the
        call's element precision (the models are time against bytes moved, so another
        precision's curve read at this one's bytes is the next best), then from the first engine
        family in ``families``, then across the fewest nodes."""
        if self.cal is None:
            return None
        measured = []  # (covers, other precision, family rank, nodes, key)
        for rank, family in enumerate(families):
            prefix = f"deepep.{family}.{mode}.{phase}."
            for k in self.cal.comm:
                if k.startswith(prefix):
                    elem, n = k[len(prefix):].split(".nodes")
                    measured.append((int(n) >= nodes, elem != dtype, rank, int(n), k))
        if not measured:
            return None
        if any(m[0] for m in measured):
            key = min((m for m in measured if m[0]), key=lambda m: m[1:4])[4]
        else:
            key = min(measured, key=lambda m: (-m[3], m[1], m[2]))[4]
        return key, self.cal.comm[key]

    def p2p(self, bytes_: np.ndarray, link: Link) -> np.ndarray:
        bytes_ = np.asarray(bytes_, dtype=np.float64)
        return np.where(bytes_ > 0, self._link(link, bytes_, 1.0), 0.0)
