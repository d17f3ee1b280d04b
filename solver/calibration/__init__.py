"""Measured kernel timings, one data file per GPU preset.

Each file under ``solver/calibration/data/<gpu>.json`` is derived from a public measured-kernel
database by ``benchmarks/calibrate.py`` (its ``source`` field names the database, version and
licence; today NVIDIA aiconfigurator's perf database, Apache-2.0). Two kinds of model:

- **Compute** (GEMM, grouped MoE GEMM, attention), per op class and precision::

      time = floor + ideal / efficiency(x),
      ideal = max(FLOPs / peak dense FLOP/s, bytes / peak HBM byte/s)

  with the GPU preset's datasheet peaks, a fixed per-call floor (launch, routing, quantisation
  kernels) and an efficiency that varies with ``x`` (tokens for a GEMM, tokens per expert for a
  MoE GEMM, sequence length for prefill attention, KV bytes read for decode attention),
  interpolated linearly in ``log x`` and held at the ends. Efficiencies never exceed 1, so no op
  beats the datasheet. A curve without a fitted floor uses floor 0 and the measured median
  efficiency.
- **Communication** (all-reduce, expert-parallel dispatch/combine): time against message bytes,
  interpolated in log-log between measured points and extended beyond them by a latency +
  bandwidth line.

A GPU without a data file, or an op missing from its file, falls back to the roofline with the
preset's documented flat efficiencies, and the estimate names the source of every term.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ComputeModel:
    """``time = floor_s + ideal / efficiency(x)`` for one op class and precision; decode
    attention adds per-sequence terms and a query-group factor (:meth:`time_decode`)."""

    floor_s: float
    x: tuple[float, ...]
    efficiency: tuple[float, ...]
    label: str
    per_sequence_s: float = 0.0  # × sequences in the call
    per_sequence_kv_head_s: float = 0.0  # × sequences × KV heads on the GPU (GQA)
    group_factor: tuple[tuple[float, float], ...] = ((1.0, 1.0),)  # (group size, factor), asc.

    def eff(self, x: np.ndarray | float) -> np.ndarray:
        lx = np.log(np.maximum(np.asarray(x, dtype=np.float64), self.x[0]))
        return np.interp(lx, np.log(self.x), self.efficiency)

    def time(self, ideal: np.ndarray, x: np.ndarray, calls: float) -> np.ndarray:
        return calls * self.floor_s + ideal / self.eff(x)

    def factor(self, group: float) -> float:
        """The factor of the last ``(size, factor)`` entry with ``size <= group``."""
        out = 1.0
        for size, f in self.group_factor:
            if size <= group:
                out = f
        return out

    def time_decode(self, ideal: np.ndarray, x: np.ndarray, sequences: np.ndarray,
                    kv_heads: float, group: float) -> np.ndarray:
        """One decode attention call over ``sequences`` sequences with ``kv_heads`` KV heads and
        query groups of ``group`` heads on the GPU: ``floor + factor(group) · (per_sequence ·
        b + per_sequence_kv_head · b · kv_heads + ideal / efficiency(x))``."""
        b = np.asarray(sequences, dtype=np.float64)
        return self.floor_s + self.factor(group) * (
            self.per_sequence_s * b + self.per_sequence_kv_head_s * b * kv_heads
            + ideal / self.eff(x))


@dataclass(frozen=True)
class CommModel:
    """Time of one collective against its message bytes."""

    bytes_: tuple[float, ...]
    seconds: tuple[float, ...]
    tail_bw: float  # bytes/s beyond the last point
    label: str

    def time(self, nbytes: np.ndarray) -> np.ndarray:
        b = np.maximum(np.asarray(nbytes, dtype=np.float64), self.bytes_[0])
        inside = np.exp(np.interp(np.log(b), np.log(self.bytes_), np.log(self.seconds)))
        beyond = self.seconds[-1] + (b - self.bytes_[-1]) / self.tail_bw
        return np.where(b > self.bytes_[-1], beyond, inside)


@dataclass(frozen=True)
class Calibration:
    """The measured models of one GPU."""

    gpu: str
    source: str
    compute: dict[str, ComputeModel] = field(default_factory=dict)
    comm: dict[str, CommModel] = field(default_factory=dict)


def _compute(key: str, raw: dict[str, Any], source: str) -> ComputeModel:
    label = f"measured ({source}: {key})"
    model = raw.get("model")
    extra: dict[str, Any] = {}
    if model:
        xs, eff, floor = model["x"], model["efficiency"], float(model["floor_us"]) * 1e-6
        # Decode attention: fitted jointly with the efficiencies, so all or nothing.
        extra = {"per_sequence_s": float(model.get("per_sequence_us", 0.0)) * 1e-6,
                 "per_sequence_kv_head_s": float(model.get("per_sequence_kv_head_us", 0.0)) * 1e-6}
        if model.get("group_factor"):
            # A factor below 1 would let a long read beat the HBM datasheet (no op does): held
            # at 1 (A100's fitted 0.94-0.96 at 12-16 query heads per KV head).
            steps = tuple((float(g), max(1.0, float(f))) for g, f in model["group_factor"])
            if any(b[0] <= a[0] for a, b in zip(steps, steps[1:], strict=False)) or \
                    any(f <= 0 for _, f in steps):
                raise ValueError(f"{key}: group_factor must ascend by group size with factors > 0")
            extra["group_factor"] = steps
    else:
        xs = [p[0] for p in raw["points"]]
        eff = [p[1] for p in raw["points"]]
        floor = 0.0
    xs = [float(v) for v in xs]
    eff = [min(1.0, max(1e-6, float(e))) for e in eff]
    if len(xs) != len(eff) or not xs or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError(f"{key}: x must be non-empty and strictly increasing")
    return ComputeModel(floor, tuple(xs), tuple(eff), label, **extra)


def _comm(key: str, raw: dict[str, Any], source: str) -> CommModel | None:
    label = f"measured ({source}: {key})"
    fitted = raw.get("bytes_model") or raw.get("model") or {}
    points = fitted.get("points") or raw.get("points_bytes_us_algbw_GBps")
    if not points:
        return None
    pts = sorted((float(p[0]), float(p[1]) * 1e-6) for p in points if p[0] > 0 and p[1] > 0)
    xs, ts = [], []
    for b, t in pts:  # strictly increasing bytes, non-decreasing time
        if xs and b <= xs[-1]:
            continue
        xs.append(b)
        ts.append(max(t, ts[-1]) if ts else t)
    if len(xs) < 2:
        return None
    tail = (xs[-1] - xs[-2]) / max(ts[-1] - ts[-2], 1e-12)
    if fitted.get("tail_GBps"):
        tail = float(fitted["tail_GBps"]) * 1e9
    return CommModel(tuple(xs), tuple(ts), tail, label)


def deepep_key(key: str) -> str | None:
    """``comm.deepep.sglang_ll.dispatch.ep16.nodes2`` -> ``deepep.sglang.ll.dispatch.fp8.nodes2``:
    engine family, mode (``ll`` decode kernels, ``normal`` prefill kernels), phase, element
    precision (SGLang's rows: FP8 dispatch, BF16 combine) and nodes spanned."""
    parts = key.split(".")
    if len(parts) < 5 or parts[:2] != ["comm", "deepep"]:
        return None
    family, _, mode = parts[2].partition("_")
    mode = {"deepep_ll": "ll", "deepep_ht": "normal", "ll": "ll", "normal": "normal"}.get(mode)
    phase = parts[3]
    if mode is None or phase not in ("dispatch", "combine"):
        return None
    dtype = parts[4] if parts[4] in ("bfloat16", "fp8", "nvfp4") else (
        "fp8" if phase == "dispatch" else "bfloat16")
    dtype = {"bfloat16": "bf16"}.get(dtype, dtype)
    nodes = next((p[5:] for p in parts if p.startswith("nodes")), "1")
    return f"deepep.{family}.{mode}.{phase}.{dtype}.nodes{nodes}"


def parse_calibration(data: dict[str, Any], gpu: str) -> Calibration:
    source = str(data.get("source", "unknown"))
    compute: dict[str, ComputeModel] = {}
    comm: dict[str, CommModel] = {}
    for key, raw in (data.get("curves") or {}).items():
        if not isinstance(raw, dict):
            continue
        if key.startswith("comm."):
            model = _comm(key, raw, source)
            if model is not None:
                comm[deepep_key(key) or key] = model
        elif "points" in raw or "model" in raw:
            compute[key] = _compute(key, raw, source)
    return Calibration(gpu=gpu, source=source, compute=compute, comm=comm)


@cache
def load_calibration(gpu: str) -> Calibration | None:
    """The models shipped for GPU preset ``gpu``, or None when there are none."""
    try:
        text = resources.files(__package__).joinpath("data", f"{gpu}.json").read_text()
    except (FileNotFoundError, OSError):
        return None
    return parse_calibration(json.loads(text), gpu)


def available() -> list[str]:
    """GPU presets with measured models."""
    try:
        files = resources.files(__package__).joinpath("data").iterdir()
    except (FileNotFoundError, OSError):
        return []
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))
