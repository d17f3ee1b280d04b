#!/usr/bin/env python3
"""Derive per-GPU efficiency curves for moeplan's cost model from aiconfigurator's perf database.

NOT part of moeplan's runtime: run it with the separate AIC virtualenv (it needs pandas/pyarrow
and, unless --db is given, the installed ``aiconfigurator-core`` package for the database path):

    /work/aic-venv/bin/python benchmarks/calibrate.py                       # all GPUs
    /work/aic-venv/bin/python benchmarks/calibrate.py --systems h200_sxm --db /path/to/systems

Output: one small JSON file per GPU, ``solver/calibration/data/<moeplan preset>.json``.

One definition for every op class:

    efficiency(x) = ideal_time(op) / measured_time(op)
    ideal_time    = max(FLOPs / peak_dense_FLOPS[precision], bytes / peak_HBM_bandwidth)

with the datasheet peaks of moeplan's hardware presets (``solver/hardware.py``), so a cost model
uses ``time = ideal_time / efficiency(x)``. Communication curves are not roofline efficiencies:
they store achieved bandwidth (bytes / time) and a latency term. Every curve says which table it
came from, which shapes it aggregates, how the FLOPs/bytes were counted and how it was smoothed;
``docs`` in the output repeats the conventions. See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "solver" / "calibration" / "data"

# AIC system name -> moeplan preset name
SYSTEM_TO_PRESET = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "b200_sxm": "b200",
    "a100_sxm": "a100-sxm-80gb",
}

# Datasheet peaks, copied from solver/hardware.py (dense TFLOPS, HBM TB/s). The script
# cross-checks them against solver.hardware when that module imports in this interpreter.
PEAKS = {
    "h100-sxm": {"tflops": {"bf16": 989.5, "fp8": 1979.0, "int8": 1979.0}, "hbm_tb_s": 3.35},
    "h200-sxm": {"tflops": {"bf16": 989.5, "fp8": 1979.0, "int8": 1979.0}, "hbm_tb_s": 4.8},
    "b200": {
        "tflops": {"bf16": 2250.0, "fp8": 4500.0, "int8": 4500.0, "fp4": 9000.0},
        "hbm_tb_s": 8.0,
    },
    "a100-sxm-80gb": {"tflops": {"bf16": 312.0, "int8": 624.0}, "hbm_tb_s": 2.039},
}

BF16 = 2.0  # bytes of an activation / output element (all AIC kernels take and return bf16)

# AIC gemm_dtype / moe_dtype -> (curve name, math precision for the peak, weight bytes/element)
GEMM_DTYPES = {
    "bfloat16": ("bf16", "bf16", 2.0),
    "fp8": ("fp8_per_tensor", "fp8", 1.0),
    "fp8_block": ("fp8_block", "fp8", 1.0 + 4.0 / (128 * 128)),
    "nvfp4": ("nvfp4", "fp4", 0.5 + 1.0 / 16),
}
MOE_DTYPES = {
    "bfloat16": ("bf16", "bf16", 2.0),
    "fp8": ("fp8_per_tensor", "fp8", 1.0),
    "fp8_block": ("fp8_block", "fp8", 1.0 + 4.0 / (128 * 128)),
    "nvfp4": ("nvfp4", "fp4", 0.5 + 1.0 / 16),
    "w4a16_mxfp4": ("w4a16_mxfp4", "bf16", 0.5 + 1.0 / 32),
    "w4a8_mxfp4_mxfp8": ("w4a8_mxfp4_mxfp8", "fp8", 0.5 + 1.0 / 32),
}

# decode attention: the previous floor-only model was fitted on GQA groups (heads / kv heads) up
# to DECODE_MAX_GROUP; the decode model's group factor is 1 for groups <= DECODE_REF_GROUP and
# fitted per distinct group size above it
DECODE_MAX_GROUP = 16
DECODE_REF_GROUP = 8

# smallest N and K of the GEMM rows the floor model is fitted on
GEMM_MODEL_NK_MIN = 256

# Representative MoE shapes (hidden, moe_inter, experts, topk) -> model, for per-shape curves
MOE_MODEL_SHAPES = {
    (4096, 1536, 128, 8): "Qwen3-235B-A22B",
    (2048, 768, 128, 8): "Qwen3-30B-A3B",
    (7168, 2048, 256, 8): "DeepSeek-V3",
    (4096, 14336, 8, 2): "Mixtral-8x7B",
    (2880, 2880, 128, 4): "gpt-oss-120b",
}

# DeepSeek-V3 MLA geometry (the only geometry in AIC's MLA tables)
MLA = {"qk_nope": 128, "qk_rope": 64, "v": 128, "kv_lora": 512}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def r4(x):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(f"{float(x):.4g}")


def rx(x):
    """x values: integers stay exact, others 4 significant digits."""
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2**53 else r4(x)


def two_param_fit(ideal_s: np.ndarray, t_s: np.ndarray) -> dict:
    """Fit measured = t0 + ideal / e_inf (least squares on relative error, t0 >= 0)."""
    ideal_s, t_s = np.asarray(ideal_s, float), np.asarray(t_s, float)
    ok = (t_s > 0) & np.isfinite(ideal_s)
    ideal_s, t_s = ideal_s[ok], t_s[ok]
    A = np.vstack([1.0 / t_s, ideal_s / t_s]).T
    (t0, c), *_ = np.linalg.lstsq(A, np.ones_like(t_s), rcond=None)
    if t0 < 0:
        t0, c = 0.0, float(np.sum(ideal_s / t_s) / np.sum((ideal_s / t_s) ** 2))
    pred = t0 + c * ideal_s
    err = np.abs(pred / t_s - 1)
    return {
        "model": "measured_time = t0 + ideal_time / e_inf (all rows of the curve's selection)",
        "t0_us": r4(t0 * 1e6),
        "e_inf": r4(1.0 / c) if c > 0 else None,
        "rel_err_median": r4(float(np.median(err))),
        "rel_err_p90": r4(float(np.quantile(err, 0.9))),
        "rows": int(len(t_s)),
    }


# ---------------------------------------------------------------------------------------------
# floor model: measured_time ~= floor + ideal / efficiency(x)   (shape-aware kernel time)
# ---------------------------------------------------------------------------------------------

FLOOR_MODEL_FORM = (
    "time_s = floor_us*1e-6 + ideal_s / efficiency(x); efficiency = marginal efficiency, "
    "piecewise linear in log(x) through (x, efficiency), held at the end values outside; "
    "ideal_s = max(FLOPs/peak, bytes/HBM) exactly as for 'points'. Use it raw: do NOT make it "
    "non-decreasing (rel_err_median_p90_if_monotone shows what that costs). Fit: stage 1 scans "
    "floor t0, efficiency per x bucket (nearest knot) = median of ideal/(t - t0) "
    "(rel_err_median_p90_stage1_bucket_medians); stage 2 = joint least squares of floor and knot "
    "efficiencies on relative error (scipy least_squares, 1e-4 <= efficiency <= 1, floor >= 0). "
    "rel_err = |pred/measured - 1| over 'rows' (the fitted rows); *_plain_curve = the curve's "
    "'points' used as time = ideal/points(x) (no floor) over the same rows; 'subsets' = the fitted "
    "model on named row subsets (possibly outside the fitted rows)"
)
COMM_MODEL_FORM = (
    "time_us(bytes) = exp(interp(log bytes, log points)) between the measured points; the first "
    "point's time below it (latency floor); beyond the last point an alpha-beta line "
    "time_us = t_last + (bytes - bytes_last) / tail_GBps / 1e3, tail_GBps = marginal bandwidth "
    "(least-squares slope) of the last <= 3 points. non_monotone_steps counts measured dips "
    "(kept raw)"
)


def curve_eval(xs, ys, x) -> np.ndarray:
    """Cost-model convention: linear in log(x) between points, end values held outside."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    lx = np.log(np.clip(np.asarray(x, float), xs[0], xs[-1]))
    return np.interp(lx, np.log(xs), ys)


def _interp_weights(x: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lk = np.log(knots)
    lx = np.log(np.clip(x, knots[0], knots[-1]))
    i = np.clip(np.searchsorted(lk, lx, side="right") - 1, 0, len(knots) - 2)
    w = (lx - lk[i]) / (lk[i + 1] - lk[i])
    return i, np.clip(w, 0.0, 1.0)


def _rel_err(pred: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    e = np.abs(pred / t - 1.0)
    return float(np.median(e)), float(np.quantile(e, 0.9))


def fit_floor_model(x, ideal_s, t_s, knots) -> dict:
    """Fit t = t0 + ideal / e(x) (e piecewise linear in log x through knots, 0 < e <= 1).

    Stage 1: for each candidate t0 the knot values are the median over rows in the knot's bucket
    (nearest knot in log x) of ideal / (t - t0); the t0 with the least mean squared relative error
    wins. Stage 2: joint least squares on relative error (t0 >= 0, 1e-4 <= e <= 1) from there.
    Returns floats/arrays (not rounded) and the per-row prediction.
    """
    from scipy.optimize import least_squares

    x, ideal, t = (np.asarray(v, float) for v in (x, ideal_s, t_s))
    ok = (t > 0) & (ideal > 0) & np.isfinite(ideal) & np.isfinite(x) & (x > 0)
    x, ideal, t = x[ok], ideal[ok], t[ok]
    knots = np.array(sorted(set(float(k) for k in knots)))
    bucket = np.abs(np.log(x)[:, None] - np.log(knots)[None, :]).argmin(1)
    used = np.unique(bucket)
    knots = knots[used] if len(used) >= 2 else knots[:2]
    bucket = np.abs(np.log(x)[:, None] - np.log(knots)[None, :]).argmin(1)
    i, w = _interp_weights(x, knots)

    def pred(t0, e):
        return t0 + ideal / (e[i] * (1 - w) + e[i + 1] * w)

    q = float(np.quantile(t, 0.01))
    best = None
    for t0 in np.concatenate([[0.0], np.geomspace(q * 0.005, q * 0.98, 60)]):
        r = np.where(t > t0, ideal / np.maximum(t - t0, 1e-15), 1.0)
        e = np.array([np.median(r[bucket == k]) if np.any(bucket == k) else np.nan
                      for k in range(len(knots))])
        e = np.clip(np.nan_to_num(e, nan=float(np.nanmedian(e))), 1e-4, 1.0)
        sc = float(np.mean((pred(t0, e) / t - 1) ** 2))
        if best is None or sc < best[0]:
            best = (sc, t0, e)
    _, t0_1, e_1 = best
    scale = float(np.median(t))
    rows = np.arange(len(t))

    def res(p):
        return pred(p[0] * scale, p[1:]) / t - 1

    def jac(p):
        e = p[1:][i] * (1 - w) + p[1:][i + 1] * w
        d = -ideal / e**2 / t
        J = np.zeros((len(t), len(p)))
        J[:, 0] = scale / t
        np.add.at(J, (rows, 1 + i), d * (1 - w))
        np.add.at(J, (rows, 2 + i), d * w)
        return J

    lo = np.concatenate([[0.0], np.full(len(knots), 1e-4)])
    hi = np.concatenate([[np.inf], np.ones(len(knots))])
    p0 = np.clip(np.concatenate([[t0_1 / scale], e_1]), lo, hi)
    sol = least_squares(res, p0, jac=jac, bounds=(lo, hi), x_scale="jac")
    t0, eff = float(sol.x[0] * scale), np.clip(sol.x[1:], 1e-4, 1.0)
    return {
        "t0": t0,
        "knots": knots,
        "eff": eff,
        "pred": pred(t0, eff),
        "pred_monotone": pred(t0, np.maximum.accumulate(eff)),
        "stage1": (t0_1, e_1, pred(t0_1, e_1)),
        "x": x,
        "ideal": ideal,
        "t": t,
        "mask": ok,
    }


def floor_model_entry(
    x, ideal_s, t_s, knots, plain_points, subsets=None, note=None, fit_mask=None
) -> dict:
    """The 'model' field of a compute curve (fit + errors vs the plain median curve).

    fit_mask: rows to fit on and to report the main errors over (default all).
    subsets: {name: boolean mask over the input rows} -> errors of the fitted model on those rows
    (they may lie outside fit_mask).
    """
    x_all, ideal_all, t_all = (np.asarray(v, float) for v in (x, ideal_s, t_s))
    fm = np.ones(len(x_all), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    f = fit_floor_model(x_all[fm], ideal_all[fm], t_all[fm], knots)
    t, ideal = f["t"], f["ideal"]
    if plain_points:
        px, py = [p[0] for p in plain_points], [p[1] for p in plain_points]
        plain = ideal / curve_eval(px, py, f["x"])
    else:
        plain = np.full_like(t, np.nan)
    med, p90 = _rel_err(f["pred"], t)
    pm, pp = _rel_err(plain, t)
    mm, mp = _rel_err(f["pred_monotone"], t)
    sm, sp = _rel_err(f["stage1"][2], t)
    out = {
        "form": "see definition.floor_model",
        "floor_us": r4(f["t0"] * 1e6),
        "x": [rx(v) for v in f["knots"]],
        "efficiency": [r4(v) for v in f["eff"]],
        "rel_err_median": r4(med),
        "rel_err_p90": r4(p90),
        "rel_err_median_plain_curve": r4(pm),
        "rel_err_p90_plain_curve": r4(pp),
        "rows": int(len(t)),
        "rel_err_median_p90_if_monotone": [r4(mm), r4(mp)],
        "rel_err_median_p90_stage1_bucket_medians": [r4(sm), r4(sp)],
    }
    notes = [note] if note else []
    if med >= pm or p90 >= pp:
        notes.append(
            "floor model NOT better than the plain curve on "
            + ("median and p90" if (med >= pm and p90 >= pp) else "median" if med >= pm else "p90")
            + " relative error for these rows"
        )
    if subsets:
        sub = {}
        ok_all = (t_all > 0) & (ideal_all > 0) & np.isfinite(ideal_all) & (x_all > 0)
        pred_all = f["t0"] + ideal_all / curve_eval(f["knots"], f["eff"], np.maximum(x_all, 1e-30))
        if plain_points:
            plain_all = ideal_all / curve_eval(px, py, np.maximum(x_all, 1e-30))
        else:
            plain_all = np.full_like(t_all, np.nan)
        for name, mask in subsets.items():
            m = np.asarray(mask, bool) & ok_all
            if m.sum() == 0:
                continue
            a, b = _rel_err(pred_all[m], t_all[m])
            c, d = _rel_err(plain_all[m], t_all[m])
            sub[name] = {
                "rows": int(m.sum()),
                "rel_err_median": r4(a),
                "rel_err_p90": r4(b),
                "rel_err_median_plain_curve": r4(c),
                "rel_err_p90_plain_curve": r4(d),
            }
        out["subsets"] = sub
    if notes:
        out["note"] = "; ".join(notes)
    return out


def floor_model_time(model: dict, x, ideal_s, batch=0.0, kv_heads=1.0, group=1.0) -> np.ndarray:
    """Evaluate a stored 'model' field: seconds. batch/kv_heads/group only matter for the
    decode-attention models (per_sequence_us, per_sequence_kv_head_us, group_factor)."""
    core = np.asarray(ideal_s, float) / curve_eval(model["x"], model["efficiency"], x)
    core = core + 1e-6 * model.get("per_sequence_us", 0.0) * np.asarray(batch, float)
    core = core + 1e-6 * model.get("per_sequence_kv_head_us", 0.0) * np.asarray(
        batch, float) * np.asarray(kv_heads, float)
    if model.get("group_factor"):
        gk = np.array([g for g, _ in model["group_factor"]], float)
        gf = np.array([v for _, v in model["group_factor"]], float)
        core = core * gf[_group_index(np.asarray(group, float), gk)]
    return model["floor_us"] * 1e-6 + core


# ---------------------------------------------------------------------------------------------
# decode-attention model: floor + group_factor * (per-sequence terms + ideal / efficiency(x))
# ---------------------------------------------------------------------------------------------

DECODE_MODEL_FORM = (
    "decode attention (attention.generation.*): time_s = 1e-6*floor_us + group_factor(g) * "
    "(1e-6*per_sequence_us*batch + 1e-6*per_sequence_kv_head_us*batch*kv_heads_per_gpu + "
    "ideal_s / efficiency(x)); batch = sequences decoded in the call (per GPU), kv_heads_per_gpu "
    "= KV heads on the GPU (MLA: no per_sequence_kv_head_us field), g = heads_per_gpu / "
    "kv_heads_per_gpu (MLA: heads_per_gpu); group_factor(g) = factor of the LAST entry of "
    "group_factor [[group_size, factor], ...] (ascending) whose group_size <= g (step function, "
    "first entry [1, 1.0]); an absent field counts as 0 (per-sequence terms) or 1 (group factor). "
    "x, ideal_s and efficiency(x) as in floor_model. Fit: joint least squares of floor, "
    "per-sequence "
    "coefficients (>= 0), knot efficiencies (1e-4..1) and log group factors on relative error over "
    "all rows, started from the floor-only fit on groups <= 16"
)


def _group_index(group: np.ndarray, gkeys: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(gkeys, np.asarray(group, float) + 1e-9, side="right") - 1,
                   0, len(gkeys) - 1)


def fit_decode_model(
    x, ideal_s, t_s, feats: dict, group, knots, gkeys=None, init_max_group=DECODE_MAX_GROUP
) -> dict:
    """Fit t = t0 + gf[group bucket] * (sum_j c_j * feat_j + ideal / e(x)).

    feats: {field name: per-row multiplier} (e.g. batch, batch*kv_heads); c_j >= 0.
    gkeys: ascending bucket lower bounds (gkeys[0] bucket has factor 1); None = no group factor.
    Start: fit_floor_model on groups <= init_max_group (t0, e), c = 0, factors 1.
    """
    from scipy.optimize import least_squares

    x, ideal, t, group = (np.asarray(v, float) for v in (x, ideal_s, t_s, group))
    fv = [np.asarray(v, float) for v in feats.values()]
    knots = np.array(sorted(set(float(k) for k in knots)))
    bucket = np.abs(np.log(x)[:, None] - np.log(knots)[None, :]).argmin(1)
    knots = knots[np.unique(bucket)]
    i, w = _interp_weights(x, knots)
    ref = group <= init_max_group
    f0 = fit_floor_model(x[ref], ideal[ref], t[ref], knots)
    e0 = np.interp(np.log(knots), np.log(f0["knots"]), f0["eff"])
    gk = np.array([1.0] if gkeys is None else gkeys, float)
    gi = _group_index(group, gk)
    K, F, G = len(knots), len(fv), len(gk) - 1
    scale = float(np.median(t))
    fscale = [scale / float(np.median(v)) for v in fv]

    def unpack(p):
        c = [p[1 + j] * fscale[j] for j in range(F)]
        gf = np.concatenate([[1.0], np.exp(p[1 + F + K:])])
        return p[0] * scale, c, p[1 + F:1 + F + K], gf

    def pred_of(t0, c, e, gf):
        ee = e[i] * (1 - w) + e[i + 1] * w
        seq = sum((cj * v for cj, v in zip(c, fv, strict=True)), np.zeros_like(t))
        return t0 + gf[gi] * (seq + ideal / ee)

    def res(p):
        return pred_of(*unpack(p)) / t - 1

    p0 = np.concatenate([[f0["t0"] / scale], np.full(F, 0.01), e0, np.zeros(G)])
    lo = np.concatenate([[0.0], np.zeros(F), np.full(K, 1e-4), np.full(G, np.log(0.2))])
    hi = np.concatenate([[np.inf], np.full(F, np.inf), np.ones(K), np.full(G, np.log(500.0))])
    sol = least_squares(res, np.clip(p0, lo, hi), bounds=(lo, hi), x_scale="jac")
    t0, c, e, gf = unpack(sol.x)
    e = np.clip(e, 1e-4, 1.0)
    c = [cj if cj > 1e-15 else 0.0 for cj in c]  # at the bound: exactly 0
    return {
        "t0": t0,
        "coef": dict(zip(feats, c, strict=True)),
        "knots": knots,
        "eff": e,
        "gkeys": gk,
        "gf": gf,
        "pred": pred_of(t0, c, e, gf),
        "pred_monotone": pred_of(t0, c, np.maximum.accumulate(e), gf),
        "floor_only": f0,
        "t": t,
        "x": x,
    }


def decode_model_entry(
    x, ideal_s, t_s, batch, kv_heads, group, knots, plain_points, mla: bool
) -> dict:
    """'model' field of a decode-attention curve: floor model + per-sequence term(s) + group
    factor, with the old floor-only model and simpler variants as error references."""
    x, ideal, t, batch, kv_heads, group = (
        np.asarray(v, float) for v in (x, ideal_s, t_s, batch, kv_heads, group)
    )
    ok = (t > 0) & (ideal > 0) & np.isfinite(ideal) & (x > 0)
    x, ideal, t, batch, kv_heads, group = (v[ok] for v in (x, ideal, t, batch, kv_heads, group))
    gvals = np.array(sorted(set(group)))
    gkeys = np.concatenate([[1.0], gvals[gvals > DECODE_REF_GROUP]])
    feats = {"per_sequence_us": batch}
    if not mla:
        feats["per_sequence_kv_head_us"] = batch * kv_heads
    img = np.inf if mla else DECODE_MAX_GROUP
    f = fit_decode_model(x, ideal, t, feats, group, knots, gkeys, img)
    # reference models on the same rows
    f0 = f["floor_only"]  # floor-only fit on groups <= 16 (the previous model; MLA: all rows)
    old = f0["t0"] + ideal / curve_eval(f0["knots"], f0["eff"], x)
    variants = {
        "floor_only_previous_model": old,
        "per_sequence_only_no_group_factor": fit_decode_model(
            x, ideal, t, {"b": batch}, group, knots, None, img)["pred"],
    }
    if not mla:
        variants["per_sequence_kv_head_only_no_group_factor"] = fit_decode_model(
            x, ideal, t, {"bh": batch * kv_heads}, group, knots, None, img)["pred"]
        variants["per_sequence_only_with_group_factor"] = fit_decode_model(
            x, ideal, t, {"b": batch}, group, knots, gkeys, img)["pred"]
    px, py = [p[0] for p in plain_points], [p[1] for p in plain_points]
    plain = ideal / curve_eval(px, py, x)
    med, p90 = _rel_err(f["pred"], t)
    mm, mp = _rel_err(f["pred_monotone"], t)
    om, op = _rel_err(old, t)
    pm, pp = _rel_err(plain, t)
    out = {
        "form": "see definition.floor_model and definition.decode_attention_model",
        "floor_us": r4(f["t0"] * 1e6),
        "per_sequence_us": r4(f["coef"]["per_sequence_us"] * 1e6),
    }
    if not mla:
        out["per_sequence_kv_head_us"] = r4(f["coef"]["per_sequence_kv_head_us"] * 1e6)
    out["group_factor"] = [[rx(g), r4(v)] for g, v in zip(f["gkeys"], f["gf"], strict=True)]
    out["group"] = "heads_per_gpu (MLA: one latent KV head)" if mla else \
        "heads_per_gpu / kv_heads_per_gpu"
    out.update({
        "x": [rx(v) for v in f["knots"]],
        "efficiency": [r4(v) for v in f["eff"]],
        "rel_err_median": r4(med),
        "rel_err_p90": r4(p90),
        "rel_err_median_plain_curve": r4(pm),
        "rel_err_p90_plain_curve": r4(pp),
        "rows": int(len(t)),
        "rel_err_median_p90_if_monotone": [r4(mm), r4(mp)],
        "rel_err_median_p90_floor_only_previous": [r4(om), r4(op)],
        "floor_only_previous": {
            "floor_us": r4(f0["t0"] * 1e6),
            "fitted_rows": "all" if mla else f"heads/kv_heads <= {DECODE_MAX_GROUP}",
            "note": "time = floor + ideal/efficiency(x) with its own efficiency (not stored); "
            "errors given for comparison",
        },
        "rel_err_median_p90_variants": {
            k: {"all": [r4(a) for a in _rel_err(v, t)],
                "batch_ge_256": [r4(a) for a in _rel_err(v[batch >= 256], t[batch >= 256])]}
            for k, v in variants.items()
        },
    })
    subsets = {
        "batch_le_128": batch <= 128,
        "batch_ge_256": batch >= 256,
        "batch_ge_512": batch >= 512,
    }
    if not mla:
        subsets[f"group_le_{DECODE_MAX_GROUP}"] = group <= DECODE_MAX_GROUP
        subsets[f"group_gt_{DECODE_MAX_GROUP}"] = group > DECODE_MAX_GROUP
        subsets[f"group_le_{DECODE_MAX_GROUP}_batch_ge_256"] = (
            (group <= DECODE_MAX_GROUP) & (batch >= 256))
    for g in gvals:
        subsets[f"{'heads' if mla else 'group'}_{rx(g)}"] = group == g
    sub = {}
    for name, m in subsets.items():
        if not m.any():
            continue
        a, b = _rel_err(f["pred"][m], t[m])
        c, d = _rel_err(plain[m], t[m])
        sub[name] = {
            "rows": int(m.sum()),
            "rel_err_median": r4(a),
            "rel_err_p90": r4(b),
            "rel_err_median_p90_floor_only_previous": [r4(v) for v in _rel_err(old[m], t[m])],
            "rel_err_median_p90_plain_curve": [r4(c), r4(d)],
        }
    out["subsets"] = sub
    notes = []
    if mm <= med and mp <= p90:
        notes.append("monotone efficiency would not be worse (see rel_err_median_p90_if_monotone)")
    if med >= om or p90 >= op:
        notes.append("NOT better than the previous floor-only model on median or p90")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def pava_increasing(y: list[float], w: list[float] | None = None) -> list[float]:
    """Isotonic (non-decreasing) least-squares fit: pool-adjacent-violators."""
    if w is None:
        w = [1.0] * len(y)
    blocks = [[v, wi, 1] for v, wi in zip(y, w, strict=True)]
    out: list[list[float]] = []
    for b in blocks:
        out.append(b)
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            v2, w2, n2 = out.pop()
            v1, w1, n1 = out.pop()
            out.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    res: list[float] = []
    for v, _, n in out:
        res.extend([v] * n)
    return res


def series_on_grid(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Interpolate one series linearly in log2(x) onto grid; NaN outside its own x range."""
    order = np.argsort(xs)
    lx, ly = np.log2(xs[order]), ys[order]
    lg = np.log2(grid)
    out = np.interp(lg, lx, ly)
    out[(lg < lx[0] - 1e-9) | (lg > lx[-1] + 1e-9)] = np.nan
    return out


def aggregate(grid, series: list[tuple[np.ndarray, np.ndarray]], min_series: int = 3) -> dict:
    """Median / min / max across series interpolated onto grid (log2 x)."""
    if not series:
        return {}
    mat = np.vstack([series_on_grid(x, y, grid) for x, y in series])
    n = np.sum(~np.isnan(mat), axis=0)
    keep = n >= max(min(min_series, len(series)), int(0.1 * n.max()))
    with np.errstate(all="ignore"):
        med = np.nanmedian(mat[:, keep], axis=0)
        lo = np.nanmin(mat[:, keep], axis=0)
        hi = np.nanmax(mat[:, keep], axis=0)
    return {"x": grid[keep], "median": med, "min": lo, "max": hi, "n": n[keep]}


def curve_from_agg(agg: dict, *, smooth: str, xname: str, **meta) -> dict:
    if not agg:
        return {"x": xname, "points": [], **meta}
    med = [float(v) for v in agg["median"]]
    if smooth == "isotonic_increasing":
        eff = pava_increasing(med, [float(n) for n in agg["n"]])
    else:
        eff = med
    warn = {}
    if np.nanmax(agg["max"]) > 1.0:
        warn = {
            "warning": f"efficiency > 1 in the data (max {np.nanmax(agg['max']):.3g}): some "
            "rows are faster "
            "than this roofline allows (mis-measured rows, or a kernel running at a "
            "higher-rate precision "
            "than the one assumed); check before use (see docs/calibration.md)"
        }
    return {
        **warn,
        "x": xname,
        "points": [[rx(x), r4(e)] for x, e in zip(agg["x"], eff, strict=True)],
        "raw_median": [r4(v) for v in med],
        "min": [r4(v) for v in agg["min"]],
        "max": [r4(v) for v in agg["max"]],
        "n_series": [int(v) for v in agg["n"]],
        "spread_max_over_min": [
            r4(hi / lo) if lo > 0 else None for lo, hi in zip(agg["min"], agg["max"], strict=True)
        ],
        "smoothing": smooth,
        **meta,
    }


def pick_version_dir(base: Path, preferred: str | None) -> Path | None:
    if not base.is_dir():
        return None
    versions = sorted([p for p in base.iterdir() if p.is_dir()], key=lambda p: _vkey(p.name))
    if preferred:
        for p in versions:
            if p.name == preferred:
                return p
    return versions[-1] if versions else None


def _vkey(v: str):
    import re

    parts = re.split(r"[.\-]", v)
    key = []
    for p in parts:
        m = re.match(r"(\d+)(.*)", p)
        if m:
            key.append((int(m.group(1)), m.group(2)))
        else:
            key.append((-1, p))
    return key


def dumps_compact(obj, indent: int = 0) -> str:
    """JSON with dicts indented and every list of scalars / of small lists on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [
            f"{pad} {json.dumps(str(k))}: {dumps_compact(v, indent + 1)}" for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and all(not isinstance(v, dict) for v in obj):
        return json.dumps(obj, separators=(",", ":"))
    if isinstance(obj, list):
        items = [f"{pad} {dumps_compact(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------


def gemm_curves(table: Path, root: Path, peaks: dict) -> tuple[dict, dict]:
    df = pd.read_parquet(table)
    bw = peaks["hbm_tb_s"] * 1e12
    curves, extra = {}, {}
    nk_range = (2048, 16384)
    mset = set(int(m) for m in df.m.unique())
    # "aligned" M values: 1,2,4,8,16 and the table's multiples of 16 (the +1 points measure tile
    # quantization and are reported separately)
    aligned = sorted(
        m for m in mset if (m <= 16 and (m & (m - 1)) == 0) or (m >= 32 and m % 16 == 0)
    )
    for dtype, g in df.groupby("gemm_dtype"):
        if dtype not in GEMM_DTYPES:
            continue
        name, prec, wbytes = GEMM_DTYPES[dtype]
        if prec not in peaks["tflops"]:
            continue
        peak = peaks["tflops"][prec] * 1e12
        g_all = g
        g = g[
            (g.n >= nk_range[0])
            & (g.n <= nk_range[1])
            & (g.k >= nk_range[0])
            & (g.k <= nk_range[1])
        ].copy()
        if g.empty:
            continue
        m, n, k = g.m.astype(float), g.n.astype(float), g.k.astype(float)
        flops = 2 * m * n * k
        byts = n * k * wbytes + m * k * BF16 + m * n * BF16
        ideal = np.maximum(flops / peak, byts / bw)
        g["eff"] = ideal / (g.latency * 1e-3)
        g["ideal"] = ideal
        series = []
        for _, s in g.groupby(["n", "k"]):
            s = s[s.m.isin(aligned)].sort_values("m")
            if len(s) >= 5:
                series.append((s.m.to_numpy(float), s.eff.to_numpy(float)))
        grid = np.array([m for m in aligned], dtype=float)
        agg = aggregate(grid, series)
        nk_pairs = sorted({(int(a), int(b)) for a, b in zip(g.n, g.k, strict=True)})
        ga = g[g.m.isin(aligned)]
        curves[f"gemm.{name}"] = curve_from_agg(
            agg,
            smooth="none",
            fit=two_param_fit(ga.ideal.to_numpy(), ga.latency.to_numpy() * 1e-3),
            xname="tokens M (rows of the activation matrix)",
            derived_from=rel(table, root),
            aic_dtype=dtype,
            peak_precision=prec,
            shapes={
                "n_k_range": list(nk_range),
                "n_values": sorted({a for a, _ in nk_pairs}),
                "k_values": sorted({b for _, b in nk_pairs}),
                "n_shapes": len(nk_pairs),
                "aggregate": "median over (N,K) pairs at each M",
            },
            counting=f"FLOPs 2MNK; bytes N*K*{wbytes:g} (weights incl. scales) + M*K*2 + "
            "M*N*2 (bf16 in/out)",
        )
        # floor model over a wider shape range (N, K >= 256) than the median curve: it is meant
        # for the cost model's own shapes (TP shards, small models)
        w = g_all[
            g_all.m.isin(aligned) & (g_all.n >= GEMM_MODEL_NK_MIN) & (g_all.k >= GEMM_MODEL_NK_MIN)
        ]
        wm, wn, wk = (w[c].to_numpy(float) for c in ("m", "n", "k"))
        wideal = np.maximum(
            2 * wm * wn * wk / peak, (wn * wk * wbytes + wm * wk * BF16 + wm * wn * BF16) / bw
        )
        in_curve = (
            (wn >= nk_range[0]) & (wn <= nk_range[1]) & (wk >= nk_range[0]) & (wk <= nk_range[1])
        )
        small = (wn < nk_range[0]) | (wk < nk_range[0])
        model = floor_model_entry(
            wm,
            wideal,
            w.latency.to_numpy() * 1e-3,
            grid,
            curves[f"gemm.{name}"]["points"],
            subsets={
                "curve_shapes_NK_2048_16384": in_curve,
                "small_shapes_N_or_K_below_2048": small,
            },
        )
        model["rows_selection"] = (
            f"aligned M (as the curve), all (N, K) pairs with N, K >= {GEMM_MODEL_NK_MIN} "
            f"({len({(a, b) for a, b in zip(wn, wk, strict=True)})} pairs, N, K up to "
            f"{int(max(wn.max(), wk.max()))}); wider than the curve's 2048-16384 so that TP "
            "shards and small models are covered"
        )
        curves[f"gemm.{name}"]["model"] = model
        # tile-quantization penalty: latency(M+1)/latency(M) for the +1 points
        pen = {}
        piv = g.pivot_table(index=["n", "k"], columns="m", values="latency")
        for mm in sorted(mset):
            if mm >= 16 and (mm + 1) in mset and mm % 16 == 0:
                r = (piv[mm + 1] / piv[mm]).dropna()
                if len(r):
                    pen[str(mm)] = r4(float(r.median()))
        extra[f"gemm.{name}"] = {"latency_ratio_M_plus_1_over_M_median": pen}
    return curves, extra


# ---------------------------------------------------------------------------------------------
# MoE (grouped GEMM, TRT-LLM fused MoE op: routing + permute + FC1 + act + FC2 + finalize)
# ---------------------------------------------------------------------------------------------


def balanced_rank0(num_tokens: int, num_experts: int, topk: int, ep: int) -> tuple[int, int]:
    """Reproduce AIC's collector `balanced_logits`: (assignments on EP rank 0, experts touched)."""
    stride = math.ceil(num_experts / topk)
    t = np.arange(num_tokens)[:, None].astype(float)
    j = np.arange(topk)[None, :].astype(float)
    if num_tokens >= stride:
        e = (t + j * stride) % num_experts
    else:
        e = (t * stride / num_tokens + j * stride) % num_experts
    e = e.astype(np.int64)
    local = num_experts // ep
    # one token selecting the same expert twice routes once (one-hot sum + softmax + top-k)
    assigned = 0
    touched = set()
    for row in e:
        u = set(int(x) for x in row if x < local)
        assigned += len(u)
        touched |= u
    return assigned, len(touched)


def powerlaw_busiest_rank(
    num_tokens: int, num_experts: int, topk: int, ep: int, alpha: float, draws: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate AIC's collector `_generate_power_law_distribution` (collector/helper.py):
    per-expert loads ~ power law(alpha) on [1, 0.8*num_tokens] (or [0.01, 2] when
    num_tokens*topk <= num_experts), scaled to num_tokens*topk, rounded, clipped at num_tokens with
    the excess water-filled onto the least-loaded experts of every rank (AIC: round-robin over
    ranks, argmin expert); then the busiest EP rank is the one timed. Returns per draw
    (A = token-expert assignments on the busiest rank, T = its experts with >= 1 token).
    Deterministic (seeded by the arguments)."""
    key = (num_tokens, num_experts, topk, ep, alpha, draws)
    if key in _POWERLAW_CACHE:
        return _POWERLAW_CACHE[key]
    rng = np.random.default_rng([num_tokens, num_experts, topk, ep, int(alpha * 1000)])
    if num_tokens * topk > num_experts:
        xmin, xmax = 1.0, num_tokens * 0.8
    else:
        xmin, xmax = 0.01, 2.0
    a1 = 1.0 - alpha
    u = rng.random((draws, num_experts))
    v = ((xmax**a1 - xmin**a1) * u + xmin**a1) ** (1.0 / a1)
    target = num_tokens * topk
    cnt = np.round(v / v.sum(1, keepdims=True) * target)
    local = num_experts // ep
    A, T = np.zeros(draws), np.zeros(draws)
    for d in range(draws):
        c = np.minimum(cnt[d], num_tokens).reshape(ep, local)
        delta = target - c.sum()
        if delta > 0:  # water-fill delta/ep per rank onto its least-loaded experts (cap num_tokens)
            share = delta / ep
            srt = np.sort(c, axis=1)
            csum = np.cumsum(srt, axis=1)
            need = srt * np.arange(1, local + 1) - csum  # to lift the j+1 smallest to srt[:, j]
            k = np.maximum((need <= share).sum(axis=1), 1)
            level = (share + csum[np.arange(ep), k - 1]) / k
            c = np.maximum(c, np.minimum(level, num_tokens)[:, None])
        elif delta < 0:  # rounding excess: take one from the largest experts
            flat = c.reshape(-1)
            flat[np.argsort(-flat)[: int(-delta)]] -= 1
            c = flat.reshape(ep, local)
        sums = c.sum(1)
        r = int(np.argmax(sums))
        A[d], T[d] = sums[r], np.count_nonzero(c[r] >= 0.5)
    _POWERLAW_CACHE[key] = (A, T)
    return A, T


_POWERLAW_CACHE: dict = {}


def moe_curves(table: Path, root: Path, peaks: dict) -> dict:
    df = pd.read_parquet(table)
    bw = peaks["hbm_tb_s"] * 1e12
    df = df[~df.kernel_source.isin(["moe_torch_flow_min_latency", "moe_torch_flow_nongated"])]
    df = df[(df.moe_tp_size <= 8) & (df.moe_ep_size <= 64)]
    curves = {}
    grid = np.array([2.0**k for k in range(-5, 12)])
    cache: dict = {}
    key_cols = [
        "moe_dtype",
        "hidden_size",
        "inter_size",
        "num_experts",
        "topk",
        "moe_tp_size",
        "moe_ep_size",
    ]
    for dtype, g in df.groupby("moe_dtype"):
        if dtype not in MOE_DTYPES:
            continue
        name, prec, wbytes = MOE_DTYPES[dtype]
        if prec not in peaks["tflops"]:
            continue
        peak = peaks["tflops"][prec] * 1e12
        bal = g[g.distribution == "balanced"].copy()
        if bal.empty:
            continue
        effs, ideals = [], []
        for row in bal.itertuples():
            key = (row.num_tokens, row.num_experts, row.topk, row.moe_ep_size)
            if key not in cache:
                cache[key] = balanced_rank0(*key)
            a, touched = cache[key]
            w_local = row.inter_size / row.moe_tp_size
            flops = 2.0 * a * 3 * row.hidden_size * w_local
            byts = touched * 3 * row.hidden_size * w_local * wbytes + a * row.hidden_size * BF16 * 2
            ideal = max(flops / peak, byts / bw)
            ideals.append(ideal)
            effs.append(ideal / (row.latency * 1e-3))
        bal["eff"] = effs
        bal["ideal"] = ideals
        bal["tpe"] = bal.num_tokens * bal.topk / bal.num_experts
        series, shapes = [], set()
        per_shape: dict = {}
        for kk, s in bal.groupby(key_cols[1:]):
            s = s.sort_values("tpe")
            if len(s) >= 5:
                series.append((s.tpe.to_numpy(float), s.eff.to_numpy(float)))
                shapes.add(kk[:4])
                per_shape.setdefault(kk[:4], []).append(
                    (s.tpe.to_numpy(float), s.eff.to_numpy(float))
                )
        agg = aggregate(grid, series)
        curves[f"moe.{name}.balanced"] = curve_from_agg(
            agg,
            smooth="none",
            fit=two_param_fit(bal.ideal.to_numpy(), bal.latency.to_numpy() * 1e-3),
            xname="tokens per expert = num_tokens * topk / num_experts (global, = per local "
            "expert when balanced)",
            derived_from=rel(table, root),
            aic_dtype=dtype,
            peak_precision=prec,
            distribution="balanced",
            shapes={
                "hidden_inter_experts_topk": sorted([list(map(int, s)) for s in shapes]),
                "moe_tp_size": "<= 8",
                "moe_ep_size": "<= 64",
                "aggregate": "median over (shape, moe_tp, moe_ep) series, log2-x interpolation",
                "kernels": sorted(bal.kernel_source.unique().tolist()),
            },
            counting=(
                "one EP rank (rank 0, experts [0,E/ep)) as AIC measures it: A = token-expert "
                "assignments "
                "landing on rank 0 and T = distinct local experts touched, both reproduced "
                "from AIC's "
                "balanced_logits; FLOPs 2*A*3*h*(inter/moe_tp); bytes T*3*h*(inter/moe_tp)*"
                f"{wbytes:g} + A*h*2*2 (bf16 in/out)"
            ),
        )
        by_model = {}
        for shp, ser in per_shape.items():
            if shp in MOE_MODEL_SHAPES:
                a2 = aggregate(grid, ser, min_series=1)
                c = curve_from_agg(a2, smooth="none", xname="tokens per expert")
                by_model[MOE_MODEL_SHAPES[shp]] = {
                    "shape_hidden_inter_experts_topk": list(map(int, shp)),
                    "points": c["points"],
                    "min": c["min"],
                    "max": c["max"],
                }
        if by_model:
            curves[f"moe.{name}.balanced"]["by_model_shape"] = by_model
        shape_key = list(
            zip(bal.hidden_size, bal.inter_size, bal.num_experts, bal.topk, strict=True)
        )
        bal_model = floor_model_entry(
            bal.tpe.to_numpy(float),
            bal.ideal.to_numpy(),
            bal.latency.to_numpy() * 1e-3,
            grid,
            curves[f"moe.{name}.balanced"]["points"],
            subsets={
                model_name: np.array([k == shp for k in shape_key])
                for shp, model_name in MOE_MODEL_SHAPES.items()
                if shp in set(shape_key)
            },
        )
        bal_model["rows_selection"] = (
            "all balanced rows of the curve (every gated shape, moe_tp <= 8, moe_ep <= 64); "
            "ideal as in 'counting' (EP rank 0: assignments A, distinct experts T)"
        )
        bal_model["use"] = (
            "price the busiest EP rank: x = its token-expert assignments / local experts, ideal "
            "from those assignments and the local experts it touches; imbalance enters through the "
            "token count (see moe.*.power_law_*.slowdown_vs_balanced.model_check)"
        )
        curves[f"moe.{name}.balanced"]["model"] = bal_model

        # power-law slowdown vs balanced at the same (shape, tp, ep, tokens)
        for dist in sorted(d for d in g.distribution.unique() if d.startswith("power_law")):
            pl = g[g.distribution == dist]
            mrg = pl.merge(
                bal[key_cols + ["num_tokens", "latency", "tpe", "ideal"]],
                on=key_cols + ["num_tokens"],
                suffixes=("", "_bal"),
            )
            if mrg.empty:
                continue
            mrg["ratio"] = mrg.latency / mrg.latency_bal
            by_ep = {}
            for ep, s in mrg.groupby("moe_ep_size"):
                ser = []
                for _, s2 in s.groupby(key_cols[1:6]):
                    s2 = s2.sort_values("tpe")
                    if len(s2) >= 5:
                        ser.append((s2.tpe.to_numpy(float), s2.ratio.to_numpy(float)))
                a3 = aggregate(grid, ser)
                if a3:
                    by_ep[str(int(ep))] = {
                        "points": [
                            [rx(x), r4(v)] for x, v in zip(a3["x"], a3["median"], strict=True)
                        ],
                        "min": [r4(v) for v in a3["min"]],
                        "max": [r4(v) for v in a3["max"]],
                    }
            check = moe_powerlaw_check(
                mrg, dist, bal_model, curves[f"moe.{name}.balanced"]["points"], by_ep, peak, bw,
                wbytes,
            )
            curves[f"moe.{name}.{dist}.slowdown_vs_balanced"] = {
                "model_check": check,
                "x": "tokens per expert (num_tokens * topk / num_experts)",
                "y": "latency(power-law routing, busiest EP rank) / latency(balanced "
                "routing), median over shapes",
                "by_moe_ep_size": by_ep,
                "derived_from": rel(table, root),
                "aic_dtype": dtype,
                "distribution": dist,
                "smoothing": "none",
                "notes": (
                    "AIC's collector samples per-expert loads from a power law with this alpha "
                    "(xmin 1, xmax 0.8*num_tokens), swaps the most loaded EP rank to rank 0 "
                    "and times "
                    "rank 0 (mean of 5 draws). efficiency_powerlaw = efficiency_balanced / "
                    "slowdown."
                ),
            }
    return curves


def moe_powerlaw_check(
    mrg: pd.DataFrame, dist: str, model: dict, plain_points, by_ep: dict, peak, bw, wbytes
) -> dict:
    """Errors of three ways to price AIC's power-law MoE rows (busiest EP rank, mean of 5 draws)."""
    alpha = float(dist.split("_")[-1])
    t = mrg.latency.to_numpy(float) * 1e-3
    tpe = mrg.tpe.to_numpy(float)
    ideal_bal = mrg.ideal.to_numpy(float)
    slow = np.ones(len(mrg))
    for ep, c in by_ep.items():
        m = (mrg.moe_ep_size == int(ep)).to_numpy()
        slow[m] = curve_eval([p[0] for p in c["points"]], [p[1] for p in c["points"]], tpe[m])
    fm_bal = floor_model_time(model, tpe, ideal_bal)
    plain_bal = ideal_bal / curve_eval([p[0] for p in plain_points], [p[1] for p in plain_points],
                                       tpe)
    # busiest rank from a re-simulation of AIC's sampling, priced with the balanced floor model
    keys = list(
        zip(mrg.num_tokens, mrg.num_experts, mrg.topk, mrg.moe_ep_size, strict=True)
    )
    sims = [powerlaw_busiest_rank(int(a), int(b), int(c), int(d), alpha) for a, b, c, d in keys]
    A = np.vstack([s[0] for s in sims])
    T = np.vstack([s[1] for s in sims])
    h = mrg.hidden_size.to_numpy(float)[:, None]
    w_local = (mrg.inter_size / mrg.moe_tp_size).to_numpy(float)[:, None]
    flops = 2.0 * A * 3 * h * w_local
    byts = T * 3 * h * w_local * wbytes + A * h * BF16 * 2
    ideal = np.maximum(flops / peak, byts / bw)
    x = A / (mrg.num_experts // mrg.moe_ep_size).to_numpy(float)[:, None]
    busy = floor_model_time(model, x.ravel(), ideal.ravel()).reshape(A.shape).mean(axis=1)
    out = {"rows": int(len(t))}
    for label, pred in (
        ("balanced_floor_model_on_busiest_rank_tokens", busy),
        ("balanced_floor_model_x_slowdown_curve", fm_bal * slow),
        ("plain_curve_x_slowdown_curve", plain_bal * slow),
        ("balanced_floor_model_no_imbalance", fm_bal),
    ):
        a, b = _rel_err(pred, t)
        out[label] = {"rel_err_median": r4(a), "rel_err_p90": r4(b)}
    out["how"] = (
        "measured = AIC power-law row. busiest_rank_tokens: per-expert loads re-simulated from "
        "AIC's collector sampling (16 seeded draws; AIC timed the mean of 5 unseeded draws), the "
        "busiest EP rank's assignments A and touched experts T give ideal and x = A/(E/ep), "
        "priced with moe.<dtype>.balanced.model, averaged over draws. x_slowdown_curve: balanced "
        "price at the row's nominal tokens/expert times by_moe_ep_size median slowdown"
    )
    return out


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------


def attention_curves(
    ctx_table: Path | None, gen_table: Path | None, root: Path, peaks: dict
) -> dict:
    bw = peaks["hbm_tb_s"] * 1e12
    curves = {}
    if ctx_table is not None and ctx_table.exists():
        c = pd.read_parquet(ctx_table)
        c = c[(c.window_size == 0) & (c.head_dim == 128) & (c.num_key_value_heads < c.num_heads)]
        for (adt, kvdt), g in c.groupby(["attn_dtype", "kv_cache_dtype"]):
            prec = "fp8" if adt == "fp8" else "bf16"
            if prec not in peaks["tflops"]:
                continue
            peak = peaks["tflops"][prec] * 1e12
            abytes = 1.0 if adt == "fp8" else 2.0
            kvb = 1.0 if kvdt == "fp8" else 2.0
            b, s, h, hk, d = (
                g[x].astype(float)
                for x in ["batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"]
            )
            flops = 4.0 * b * h * d * s * (s + 1) / 2
            byts = (
                b * s * (h + 2 * hk) * d * abytes + b * s * h * d * BF16 + b * s * 2 * hk * d * kvb
            )
            ideal = np.maximum(flops / peak, byts / bw)
            g = g.assign(eff=ideal / (g.latency * 1e-3), tot=b * s, ideal=ideal)
            for xcol, xname, tag in (("isl", "tokens per sequence (isl)", "by_isl"),):
                series = []
                for _, s2 in g.groupby(
                    ["batch_size", "num_heads", "num_key_value_heads"]
                    if xcol == "isl"
                    else ["isl", "num_heads", "num_key_value_heads"]
                ):
                    s2 = s2.sort_values(xcol)
                    if len(s2) >= 3:
                        series.append((s2[xcol].to_numpy(float), s2.eff.to_numpy(float)))
                grid = (
                    np.array(sorted(set(g[xcol].astype(float))))
                    if xcol == "isl"
                    else np.array([2.0**k for k in range(4, 23)])
                )
                agg = aggregate(grid, series)
                a_tag = "fp8" if adt == "fp8" else "bf16"
                kv_tag = "fp8" if kvdt == "fp8" else "bf16"
                curves[f"attention.context.gqa.{a_tag}_kv{kv_tag}.{tag}"] = curve_from_agg(
                    agg,
                    smooth="isotonic_increasing",
                    fit=two_param_fit(g.ideal.to_numpy(), g.latency.to_numpy() * 1e-3),
                    xname=xname,
                    derived_from=rel(ctx_table, root),
                    aic_attn_dtype=adt,
                    aic_kv_cache_dtype=kvdt,
                    peak_precision=prec,
                    shapes={
                        "head_dim": 128,
                        "window": 0,
                        "heads_per_gpu": sorted(int(v) for v in g.num_heads.unique()),
                        "kv_heads_per_gpu": "< heads (GQA/MQA)",
                        "batch_sizes": sorted(int(v) for v in g.batch_size.unique()),
                        "aggregate": "median over (batch or isl, heads, kv_heads) series",
                    },
                    counting=(
                        "causal: FLOPs 4*b*H*d*s(s+1)/2; bytes b*s*(H+2*Hkv)*d*attn_bytes "
                        "(Q,K,V in) + "
                        "b*s*H*d*2 (out) + b*s*2*Hkv*d*kv_bytes (KV-cache write); per layer per GPU"
                    ),
                )
                key = f"attention.context.gqa.{a_tag}_kv{kv_tag}.{tag}"
                curves[key]["model"] = floor_model_entry(
                    g.isl.to_numpy(float),
                    g.ideal.to_numpy(),
                    g.latency.to_numpy() * 1e-3,
                    [p[0] for p in curves[key]["points"]],
                    curves[key]["points"],
                )
    if gen_table is not None and gen_table.exists():
        gdf = pd.read_parquet(gen_table)
        gdf = gdf[
            (gdf.window_size == 0)
            & (gdf.head_dim == 128)
            & (gdf.num_key_value_heads < gdf.num_heads)
        ]
        for kvdt, g in gdf.groupby("kv_cache_dtype"):
            kvb = 1.0 if kvdt == "fp8" else 2.0
            prec = "fp8" if kvdt == "fp8" and "fp8" in peaks["tflops"] else "bf16"
            peak = peaks["tflops"][prec] * 1e12
            b, h, hk, d = (
                g[x].astype(float)
                for x in ["batch_size", "num_heads", "num_key_value_heads", "head_dim"]
            )
            s = (g.isl + g.step).astype(float)  # kv tokens = isl(1) + cached tokens
            kv_bytes = b * s * 2 * hk * d * kvb
            flops = 4.0 * b * h * d * s
            byts = kv_bytes + b * h * d * BF16 * 2
            ideal = np.maximum(flops / peak, byts / bw)
            g = g.assign(eff=ideal / (g.latency * 1e-3), kvb=kv_bytes, ideal=ideal)
            series = []
            for _, s2 in g.groupby(["batch_size", "num_heads", "num_key_value_heads"]):
                s2 = s2.sort_values("kvb")
                if len(s2) >= 3:
                    series.append((s2.kvb.to_numpy(float), s2.eff.to_numpy(float)))
            grid = np.array([2.0**k for k in range(14, 37)])
            agg = aggregate(grid, series)
            key = f"attention.generation.gqa.kv{'fp8' if kvdt == 'fp8' else 'bf16'}"
            curves[key] = (
                curve_from_agg(
                    agg,
                    smooth="isotonic_increasing",
                    fit=two_param_fit(g.ideal.to_numpy(), g.latency.to_numpy() * 1e-3),
                    xname="KV-cache bytes read per layer per GPU = batch*kv_len*2*Hkv*d*kv_bytes",
                    derived_from=rel(gen_table, root),
                    aic_kv_cache_dtype=kvdt,
                    peak_precision=prec,
                    shapes={
                        "head_dim": 128,
                        "window": 0,
                        "heads_per_gpu": sorted(int(v) for v in g.num_heads.unique()),
                        "kv_heads_per_gpu": "< heads (GQA/MQA)",
                        "batch_sizes": sorted(int(v) for v in g.batch_size.unique()),
                        "kv_len": "isl + step = 2 .. 131072 (powers of two)",
                        "aggregate": "median over (batch, heads, kv_heads) series on a log2 "
                        "grid of KV bytes",
                    },
                    counting="FLOPs 4*b*H*d*s; bytes KV read + q in + out (bf16)",
                )
            )
            curves[key]["model"] = decode_model_entry(
                g.kvb.to_numpy(float),
                g.ideal.to_numpy(),
                g.latency.to_numpy() * 1e-3,
                g.batch_size.to_numpy(float),
                g.num_key_value_heads.to_numpy(float),
                (g.num_heads / g.num_key_value_heads).to_numpy(float),
                [p[0] for p in curves[key]["points"]],
                curves[key]["points"],
                mla=False,
            )
    return curves


def mla_curves(ctx_table: Path | None, gen_table: Path | None, root: Path, peaks: dict) -> dict:
    bw = peaks["hbm_tb_s"] * 1e12
    peak = peaks["tflops"]["bf16"] * 1e12
    curves = {}
    dqk = MLA["qk_nope"] + MLA["qk_rope"]
    if ctx_table is not None and ctx_table.exists():
        c = pd.read_parquet(ctx_table)
        for kvdt, g in c.groupby("kv_cache_dtype"):
            b, s, h = (g[x].astype(float) for x in ["batch_size", "isl", "num_heads"])
            flops = 2.0 * b * h * (dqk + MLA["v"]) * s * (s + 1) / 2
            byts = b * s * h * (2 * dqk + MLA["v"]) * BF16 + b * s * h * MLA["v"] * BF16
            ideal = np.maximum(flops / peak, byts / bw)
            g = g.assign(eff=ideal / (g.latency * 1e-3), ideal=ideal)
            series = []
            for _, s2 in g.groupby(["batch_size", "num_heads"]):
                s2 = s2.sort_values("isl")
                if len(s2) >= 3:
                    series.append((s2.isl.to_numpy(float), s2.eff.to_numpy(float)))
            grid = np.array(sorted(set(g.isl.astype(float))))
            key = f"attention.context.mla.kv{'fp8' if kvdt == 'fp8' else 'bf16'}.by_isl"
            curves[key] = (
                curve_from_agg(
                    aggregate(grid, series),
                    smooth="isotonic_increasing",
                    fit=two_param_fit(g.ideal.to_numpy(), g.latency.to_numpy() * 1e-3),
                    xname="tokens per sequence (isl)",
                    derived_from=rel(ctx_table, root),
                    aic_kv_cache_dtype=kvdt,
                    peak_precision="bf16",
                    shapes={
                        "geometry": "DeepSeek-V3 MLA (q/k 128+64, v 128), not absorbed in prefill",
                        "heads_per_gpu": sorted(int(v) for v in g.num_heads.unique()),
                    },
                    counting="causal: FLOPs 2*b*H*(192+128)*s(s+1)/2; bytes Q,K (192/head), V "
                    "(128/head) in + out, bf16",
                )
            )
            curves[key]["model"] = floor_model_entry(
                g.isl.to_numpy(float),
                g.ideal.to_numpy(),
                g.latency.to_numpy() * 1e-3,
                [p[0] for p in curves[key]["points"]],
                curves[key]["points"],
            )
    if gen_table is not None and gen_table.exists():
        gdf = pd.read_parquet(gen_table)
        lat = MLA["kv_lora"] + MLA["qk_rope"]
        for kvdt, g in gdf.groupby("kv_cache_dtype"):
            kvb = 1.0 if kvdt == "fp8" else 2.0
            prec = "fp8" if kvdt == "fp8" and "fp8" in peaks["tflops"] else "bf16"
            peak = peaks["tflops"][prec] * 1e12
            b, h = g.batch_size.astype(float), g.num_heads.astype(float)
            s = (g.isl + g.step).astype(float)
            kv_bytes = b * s * lat * kvb
            flops = 2.0 * b * h * s * (lat + MLA["kv_lora"])
            byts = kv_bytes + b * h * (lat + MLA["kv_lora"]) * BF16
            ideal = np.maximum(flops / peak, byts / bw)
            g = g.assign(eff=ideal / (g.latency * 1e-3), kvb=kv_bytes, ideal=ideal)
            series = []
            for _, s2 in g.groupby(["batch_size", "num_heads"]):
                s2 = s2.sort_values("kvb")
                if len(s2) >= 3:
                    series.append((s2.kvb.to_numpy(float), s2.eff.to_numpy(float)))
            grid = np.array([2.0**k for k in range(12, 36)])
            key = f"attention.generation.mla.kv{'fp8' if kvdt == 'fp8' else 'bf16'}"
            curves[key] = (
                curve_from_agg(
                    aggregate(grid, series),
                    smooth="isotonic_increasing",
                    fit=two_param_fit(g.ideal.to_numpy(), g.latency.to_numpy() * 1e-3),
                    xname="KV-cache bytes read per layer per GPU = batch*kv_len*576*kv_bytes",
                    derived_from=rel(gen_table, root),
                    aic_kv_cache_dtype=kvdt,
                    peak_precision=prec,
                    shapes={
                        "geometry": "DeepSeek-V3 MLA, absorbed decode (latent 512 + rope 64)",
                        "heads_per_gpu": sorted(int(v) for v in g.num_heads.unique()),
                    },
                    counting="FLOPs 2*b*H*s*(576+512); bytes latent KV read + q/out (bf16)",
                )
            )
            curves[key]["model"] = decode_model_entry(
                g.kvb.to_numpy(float),
                g.ideal.to_numpy(),
                g.latency.to_numpy() * 1e-3,
                g.batch_size.to_numpy(float),
                np.ones(len(g)),
                g.num_heads.to_numpy(float),
                [p[0] for p in curves[key]["points"]],
                curves[key]["points"],
                mla=True,
            )
    return curves


# ---------------------------------------------------------------------------------------------
# Communication
# ---------------------------------------------------------------------------------------------

BUS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
}


def alpha_beta_fit(byts: np.ndarray, t_s: np.ndarray) -> tuple[float, float]:
    """Fit t = alpha + bytes/bw minimising relative error (weights 1/t). Returns (alpha_s, bw)."""
    w = 1.0 / t_s
    A = np.vstack([np.ones_like(byts), byts]).T * w[:, None]
    sol, *_ = np.linalg.lstsq(A, t_s * w, rcond=None)
    alpha, inv_bw = sol
    alpha = max(float(alpha), 0.0)
    bw = 1.0 / inv_bw if inv_bw > 0 else float("inf")
    return alpha, bw


def loglog_time_model(byts, t_us, what: str = "bytes") -> dict:
    """time_us(bytes): log-log interpolation of measured points, alpha-beta tail beyond them."""
    byts, t_us = np.asarray(byts, float), np.asarray(t_us, float)
    o = np.argsort(byts)
    byts, t_us = byts[o], t_us[o]
    tail = slice(max(len(byts) - 3, 0), len(byts))
    if len(byts) >= 2:
        slope = np.polyfit(byts[tail], t_us[tail], 1)[0]  # us per byte over the last <= 3 points
    else:
        slope = 0.0
    if not slope > 0:
        slope = t_us[-1] / byts[-1]
    dips = int(np.sum(np.diff(t_us) < 0))
    return {
        "form": f"see definition.comm_time_model (x = {what})",
        "points": [[rx(b), r4(t)] for b, t in zip(byts, t_us, strict=True)],
        "tail_GBps": r4(1.0 / slope / 1e3),
        "non_monotone_steps": dips,
    }


def loglog_time_eval(model: dict, byts) -> np.ndarray:
    pts = np.asarray(model["points"], float)
    b = np.asarray(byts, float)
    t = np.exp(np.interp(np.log(np.maximum(b, pts[0, 0])), np.log(pts[:, 0]), np.log(pts[:, 1])))
    beyond = b > pts[-1, 0]
    t[beyond] = pts[-1, 1] + (b[beyond] - pts[-1, 0]) / (model["tail_GBps"] * 1e3)
    return t


def comm_curve(
    g: pd.DataFrame, op: str, n: int, elem_bytes: float, table: Path, root: Path, **meta
) -> dict:
    # some AIC nccl tables hold two collection passes of the same sizes: take the median per size
    g = g.groupby("message_size", as_index=False).latency.median().sort_values("message_size")
    byts = g.message_size.to_numpy(float) * elem_bytes
    t_s = g.latency.to_numpy(float) * 1e-3
    algbw = byts / t_s
    alpha, bw = alpha_beta_fit(byts, t_s)
    bus = BUS_FACTOR.get(op, lambda n: 1.0)(n)
    return {
        "x": "message bytes (AIC message_size elements * element bytes)",
        "points_bytes_us_algbw_GBps": [
            [int(b), r4(t * 1e6), r4(a / 1e9)] for b, t, a in zip(byts, t_s, algbw, strict=True)
        ],
        "latency_us_min": r4(float(t_s.min()) * 1e6),
        "algbw_GBps_max": r4(float(algbw.max()) / 1e9),
        "busbw_GBps_max": r4(float(algbw.max()) * bus / 1e9),
        "bus_factor": r4(bus),
        "fit_alpha_beta": {
            "alpha_us": r4(alpha * 1e6),
            "algbw_GBps": r4(bw / 1e9),
            "busbw_GBps": r4(bw * bus / 1e9),
            "model": "t = alpha + bytes/algbw, least squares on relative error",
        },
        "model": loglog_time_model(byts, t_s * 1e6),
        "group_size": n,
        "derived_from": rel(table, root),
        **meta,
    }


def comm_curves(ar_table: Path | None, nccl_table: Path | None, root: Path) -> dict:
    curves = {}
    if ar_table is not None and ar_table.exists():
        df = pd.read_parquet(ar_table)
        for (ks, n), g in df.groupby(["kernel_source", "num_gpus"]):
            curves[f"comm.custom_allreduce.n{int(n)}"] = comm_curve(
                g,
                "all_reduce",
                int(n),
                2.0,
                ar_table,
                root,
                kernel_source=ks,
                dtype="bfloat16",
                link="intra-node NVLink (one 8-GPU node)",
                notes="TRT-LLM custom all-reduce (what AIC uses for TP all-reduce and MoE "
                "pre/post dispatch on Hopper)",
            )
    if nccl_table is not None and nccl_table.exists():
        df = pd.read_parquet(nccl_table)
        df = df[df.nccl_dtype == "half"]
        for (op, n), g in df.groupby(["op_name", "num_gpus"]):
            curves[f"comm.nccl.{op}.n{int(n)}"] = comm_curve(
                g,
                op,
                int(n),
                2.0,
                nccl_table,
                root,
                dtype="half",
                link="intra-node NVLink (one 8-GPU node)",
                notes="nccl-tests out-of-place time; message size = nccl-tests -b (total "
                "buffer) / 2 bytes",
            )
    return curves


DEEPEP_UNIT_BYTES = {  # bytes of one dispatched hidden vector, h = hidden size
    "bfloat16": lambda h: 2.0 * h,
    "fp8": lambda h: h + 4.0 * h / 128,  # e4m3 + one fp32 scale per 128 (DeepEP fp8 format)
    "nvfp4": lambda h: h / 2 + h / 16,  # e2m1 + one fp8 scale per 16
}


def deepep_bytes_model(
    tokens, t_us, *, h, topk, experts, ep, nodes, mode, phase, dispatch_dtype
) -> dict:
    """Tokens per rank -> bytes received per GPU for a DeepEP dispatch/combine (uniform routing)."""
    local = experts // ep
    p_rank = 1.0 - math.prod((experts - local - i) / (experts - i) for i in range(topk))
    if mode == "normal":
        units = ep * p_rank  # tokens received per GPU per token-per-rank, one per (token, rank)
        unit_txt = (
            f"normal: one copy per (token, destination rank); each of the {ep} ranks (self "
            f"included) sends n*P tokens, P = 1 - C(E-E/ep,k)/C(E,k) = {p_rank:.4g}; received "
            f"tokens = {units:.4g}*n"
        )
    else:
        units = float(topk)  # one message per (token, expert)
        unit_txt = (
            f"low-latency: one message per (token, expert), no dedup; received messages = "
            f"topk*n = {topk}*n (AIC's SGLang LL bandwidth column counts this: 8n - 10)"
        )
    dt = dispatch_dtype if phase == "dispatch" else "bfloat16"
    unit_bytes = DEEPEP_UNIT_BYTES[dt](h)
    byts = np.asarray(tokens, float) * units * unit_bytes
    t_us = np.asarray(t_us, float)
    m = loglog_time_model(byts, t_us, "bytes")
    return {
        "x": "bytes received per GPU per call (self included)",
        "scope": "intra_node" if nodes == 1 else "inter_node",
        "mode": "low_latency" if mode != "normal" else "normal",
        "use": "decode (low-latency kernels)" if mode != "normal" else "prefill (normal / "
        "high-throughput kernels)",
        **m,
        "effGBps": [r4(b / (t * 1e-6) / 1e9) for b, t in zip(byts, t_us, strict=True)],
        "bytes_per_token_per_rank": r4(units * unit_bytes),
        "counting": f"DeepSeek shape h={h}, top-{topk}, {experts} experts, EP{ep} on {nodes} "
        f"node(s), uniform routing. {unit_txt}. Element bytes: {phase} "
        f"{dt} = {unit_bytes:g} B per hidden vector"
        + (" (e4m3 + fp32 scale per 128)" if dt == "fp8" else "")
        + (" (combine is always bf16)" if phase == "combine" else "")
        + f". Share from other GPUs {(ep - 1) / ep:.3g}"
        + (f", from other nodes {(ep - 8) / ep:.3g}" if nodes > 1 else ""),
    }


def a2a_curves(
    trt_table: Path | None, inter_normal: Path | None, inter_ll: Path | None, root: Path
) -> dict:
    """DeepEP dispatch/combine time vs tokens per rank (intra-node TRT-LLM; multi-node SGLang)."""
    curves = {}

    def remote_bytes(tokens, h, topk, ep, elem):
        # expected distinct destination ranks per token (uniform routing), minus self
        dest = ep * (1 - (1 - 1 / ep) ** topk)
        return tokens * h * elem * dest * (ep - 1) / ep

    if trt_table is not None and trt_table.exists():
        df = pd.read_parquet(trt_table)
        for (be, ph, dt, h, k, e, ep, nn), g in df.groupby(
            [
                "comm_backend",
                "phase",
                "comm_dtype",
                "hidden_size",
                "topk",
                "num_experts",
                "ep_size",
                "node_num",
            ]
        ):
            if not (h == 7168 and k == 8 and e == 256):
                continue
            g = g.groupby("num_tokens", as_index=False).latency.median().sort_values("num_tokens")
            elem = {"bfloat16": 2.0, "fp8": 1.0, "nvfp4": 0.5625}.get(dt, 2.0)
            pts = []
            for tok, lat_us in zip(g.num_tokens, g.latency, strict=True):
                rb = remote_bytes(tok, h, k, ep, elem if ph == "dispatch" else 2.0)
                pts.append([int(tok), r4(lat_us), r4(rb / (lat_us * 1e-6) / 1e9)])
            curves[f"comm.deepep.{be}.{ph}.{dt}.ep{int(ep)}.nodes{int(nn)}"] = {
                "x": "tokens per rank",
                "points_tokens_us_effGBps": pts,
                "shape": {
                    "hidden": int(h),
                    "topk": int(k),
                    "experts": int(e),
                    "ep": int(ep),
                    "nodes": int(nn),
                },
                "derived_from": rel(trt_table, root),
                "counting": "effGBps = tokens*h*elem*E[distinct remote ranks]/time, uniform "
                "routing "
                "(combine always bf16); latency in AIC table is microseconds",
                "bytes_model": deepep_bytes_model(
                    g.num_tokens, g.latency, h=int(h), topk=int(k), experts=int(e), ep=int(ep),
                    nodes=int(nn), mode="normal" if be.endswith("_ht") else "ll", phase=ph,
                    dispatch_dtype=dt,
                ),
            }
    for table, kind in ((inter_normal, "normal"), (inter_ll, "ll")):
        if table is None or not table.exists():
            continue
        df = pd.read_parquet(table)
        df = df[(df.hidden_size == 7168) & (df.num_topk == 8) & (df.num_experts == 256)]
        for nn, g in df.groupby("node_num"):
            ep = int(nn) * 8
            for ph in ("dispatch", "combine"):
                if kind == "normal":
                    col = g[f"{ph}_transmit_us"] + g[f"{ph}_notify_us"]
                    s = g.assign(t=col).groupby("num_token").t.min()  # best SM budget
                else:
                    s = g.groupby("num_token")[f"{ph}_avg_t_us"].median()
                s = s.sort_index()
                pts = []
                for tok, t in s.items():
                    rb = remote_bytes(tok, 7168, 8, ep, 1.0 if ph == "dispatch" else 2.0)
                    pts.append([int(tok), r4(t), r4(rb / (t * 1e-6) / 1e9)])
                curves[f"comm.deepep.sglang_{kind}.{ph}.ep{ep}.nodes{int(nn)}"] = {
                    "x": "tokens per rank",
                    "points_tokens_us_effGBps": pts,
                    "shape": {
                        "hidden": 7168,
                        "topk": 8,
                        "experts": 256,
                        "ep": ep,
                        "nodes": int(nn),
                    },
                    "derived_from": rel(table, root),
                    "link": "intra-node NVLink"
                    if nn == 1
                    else f"{int(nn)} nodes x 8 GPUs (NVLink + InfiniBand)",
                    "counting": "dispatch assumed fp8 (DeepSEEK default), combine bf16; "
                    "effGBps as for TRT-LLM rows"
                    + ("; min over collected SM budgets" if kind == "normal" else ""),
                    "caveat": "collected with SGLang 0.5.0-era DeepEP (AIC data version "
                    "0.5.6.post2); the only multi-node data in AIC"
                    + f"; rows measured on {', '.join(sorted(g.device.unique()))}",
                    "bytes_model": deepep_bytes_model(
                        s.index.to_numpy(), s.to_numpy(), h=7168, topk=8, experts=256, ep=ep,
                        nodes=int(nn), mode=kind, phase=ph, dispatch_dtype="fp8",
                    ),
                }
    return curves


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# --validate: does the floor model reproduce AIC's own per-op latencies?
# ---------------------------------------------------------------------------------------------

AIC_TO_CURVE_DTYPE = {"bfloat16": "bf16", "fp8": "fp8_per_tensor", "fp8_block": "fp8_block",
                      "w4a16_mxfp4": "w4a16_mxfp4", "nvfp4": "nvfp4"}
# AIC's routing exponent per model family (core/sdk/models/moe.py:128, deepseek.py:170)
AIC_ALPHA = {"deepseek": 1.01}


def _hf_config(model: str) -> dict:
    import aiconfigurator_core

    p = Path(aiconfigurator_core.__file__).parent / "model_configs"
    return json.loads((p / (model.replace("/", "--") + "_config.json")).read_text())


def validate(data_dir: Path, estimates: Path) -> dict:
    """Rebuild per-layer op shapes of the AIC reference configurations and compare the floor
    model (and the plain curve) with AIC's per-op latencies (per_op_ms / layers).

    Ops: qkv/proj/router/logits GEMMs and GQA attention (Qwen3, Mixtral; gpt-oss GEMMs only: its
    attention is head_dim 64 with sliding windows), MoE (all; AIC prices power-law rows, so the
    balanced model is scaled by the power-law slowdown curve or evaluated on a re-simulated
    busiest rank), DeepSeek shared-expert GEMMs and router. Not reconstructed: DeepSeek MLA
    module, moe_overlap (max of two op groups), norms/embedding (not table ops), communication,
    pipeline-parallel configurations.
    """
    est = json.loads(estimates.read_text())
    files = {}
    rows = []

    def ratio(op, cid, step, aic_ms, fm_s, plain_s, extra=None):
        if aic_ms and aic_ms > 0:
            rows.append({"op": op, "id": cid, "step": step, "aic_us": aic_ms * 1e3,
                         "fm": fm_s * 1e6 / (aic_ms * 1e3), "plain": plain_s * 1e6 / (aic_ms * 1e3),
                         **(extra or {})})

    for res in est["results"]:
        cfg, q = res["config"], res["quant"]
        if cfg["pp_size"] != 1 or "per_op_ms" not in res:
            continue
        preset = SYSTEM_TO_PRESET[cfg["system"]]
        if preset not in files:
            files[preset] = json.loads((data_dir / f"{preset}.json").read_text())
        doc = files[preset]
        cur = doc["curves"]
        pk = doc["peaks"]
        bw = pk["hbm_tb_s"] * 1e12
        hf = _hf_config(cfg["model"])
        deepseek = "n_routed_experts" in hf
        h = hf["hidden_size"]
        H, Hkv = hf["num_attention_heads"], hf["num_key_value_heads"]
        d = hf.get("head_dim") or h // H
        L = hf["num_hidden_layers"]
        E = hf.get("num_experts") or hf.get("num_local_experts") or hf.get("n_routed_experts")
        k = hf["num_experts_per_tok"]
        inter = hf.get("moe_intermediate_size") or hf["intermediate_size"]
        tp, dp, etp, ep = (cfg[c] for c in ("tp_size", "attention_dp_size", "moe_tp_size",
                                            "moe_ep_size"))
        kvpg = (Hkv + tp - 1) // tp
        sc = res["scheduling"]
        steps = {
            "mix_step": ("context", int(sc["mix_context_tokens"] + sc["mix_decode_query_tokens"]),
                         int(sc["mix_decode_requests"])),
            "genonly_step": ("generation", cfg["batch_size"], cfg["batch_size"]),
        }
        gname = AIC_TO_CURVE_DTYPE[q["gemm"]]
        s_kv = cfg["isl"] + cfg["osl"] // 2 + 1

        def gemm(dtype_name, M, N, K, cur=cur, pk=pk, bw=bw):
            c = cur[f"gemm.{dtype_name}"]
            prec = c["peak_precision"]
            wb = {v[0]: v[2] for v in GEMM_DTYPES.values()}[dtype_name]
            ideal = max(2 * M * N * K / (pk["dense_tflops"][prec] * 1e12),
                        (N * K * wb + M * K * BF16 + M * N * BF16) / bw)
            fm = float(floor_model_time(c["model"], M, ideal)[()])
            pl = ideal / float(curve_eval([p[0] for p in c["points"]], [p[1] for p in c["points"]],
                                          M))
            return fm, pl

        for step, (pre, M, gen_rows) in steps.items():
            ops = res["per_op_ms"].get(step, {})
            gemms = []
            if not deepseek:
                gemms += [("qkv_gemm", gname, H * d // tp + 2 * d * kvpg, h, L),
                          ("proj_gemm", gname, h, H * d // tp, L)]
            else:
                gemms += [("shared_gate_up_gemm", gname, 2 * inter // tp, h, L),
                          ("shared_ffn2_gemm", gname, h, inter // tp, L)]
            gemms.append(("router_gemm", "bf16", E, h, L))
            if pre == "generation" and not deepseek:
                gemms.append(("logits_gemm", "bf16", hf["vocab_size"] // tp, h, 1))
            for name, dn, N, K, layers in gemms:
                key = f"{pre}_{name}"
                if key in ops:
                    fm, pl = gemm(dn, M, N, K)
                    ratio(f"gemm.{name}", cfg["id"], step, ops[key] / layers, fm, pl,
                          {"shape": f"M{M} N{N} K{K} {dn}"})
            # MoE
            key = f"{pre}_moe"
            mname = AIC_TO_CURVE_DTYPE[q["moe"]]
            c = cur.get(f"moe.{mname}.balanced")
            if key in ops and c:
                wb = {v[0]: v[2] for v in MOE_DTYPES.values()}[mname]
                peak = pk["dense_tflops"][c["peak_precision"]] * 1e12
                ntok = M * dp
                a, T = balanced_rank0(ntok, E, k, ep)
                wl = inter / etp
                ideal = max(2 * a * 3 * h * wl / peak, (T * 3 * h * wl * wb + a * h * 4) / bw)
                tpe = ntok * k / E
                alpha = AIC_ALPHA.get("deepseek" if deepseek else "", 1.2)
                sl = cur.get(f"moe.{mname}.power_law_{alpha:g}.slowdown_vs_balanced", {})
                by_ep = sl.get("by_moe_ep_size", {})
                slow = 1.0
                if str(ep) in by_ep:
                    pts = by_ep[str(ep)]["points"]
                    slow = float(curve_eval([p[0] for p in pts], [p[1] for p in pts], tpe))
                fm = float(floor_model_time(c["model"], tpe, ideal)[()]) * slow
                pl = ideal / float(curve_eval([p[0] for p in c["points"]],
                                              [p[1] for p in c["points"]], tpe)) * slow
                A, TT = powerlaw_busiest_rank(ntok, E, k, ep, alpha)
                idl = np.maximum(2 * A * 3 * h * wl / peak, (TT * 3 * h * wl * wb + A * h * 4) / bw)
                busy = float(np.mean(floor_model_time(c["model"], A / (E // ep), idl)))
                ratio("moe", cfg["id"], step, ops[key] / L, fm, pl,
                      {"busiest": busy * 1e6 / (ops[key] / L * 1e3),
                       "shape": f"tokens {ntok} tpe {tpe:.3g} ep{ep} etp{etp} {mname} "
                                f"alpha {alpha:g}"})
            # attention (GQA, head_dim 128, no window)
            if deepseek or d != 128 or hf.get("sliding_window"):
                continue
            kvb = 1.0 if q["kvcache"] == "fp8" else 2.0
            a_tag = "fp8" if q["fmha"] == "fp8" else "bf16"
            kv_tag = "fp8" if q["kvcache"] == "fp8" else "bf16"
            hh = H // tp
            key = "context_attention (scaled)"
            c = cur.get(f"attention.context.gqa.{a_tag}_kv{kv_tag}.by_isl")
            if step == "mix_step" and key in ops and c and cfg["isl"] <= sc["mix_context_tokens"]:
                s = cfg["isl"]
                prec = c["peak_precision"]
                ab = 1.0 if a_tag == "fp8" else 2.0
                flops = 4.0 * hh * d * s * (s + 1) / 2
                byts = s * (hh + 2 * kvpg) * d * ab + s * hh * d * BF16 + s * 2 * kvpg * d * kvb
                ideal = max(flops / (pk["dense_tflops"][prec] * 1e12), byts / bw)
                fm = float(floor_model_time(c["model"], s, ideal)[()])
                pl = ideal / float(curve_eval([p[0] for p in c["points"]],
                                              [p[1] for p in c["points"]], s))
                # AIC adds fused extras to the table value (rs/operators/attention.rs:243-270):
                # 1.1 x (qk_norm 4+4 mem ops if Qwen3, rope 2, kv_write 2), each mem op
                # bytes/(0.8*HBM) + 3 us with per-token-sized bytes -> ~3 us each
                qk = "qwen3" in hf.get("model_type", "")
                mem = 3e-6
                extra = 1.1 * ((8 * mem if qk else 0.0) + 2 * mem + 2 * mem)
                ratio("attention.context", cfg["id"], step, ops[key] / L - extra * 1e3, fm, pl,
                      {"shape": f"b1 isl{s} H{hh} Hkv{kvpg} {a_tag}/kv{kv_tag}; AIC minus "
                                f"{extra * 1e6:.1f} us fused extras"})
            key = "generation_attention"
            c = cur.get(f"attention.generation.gqa.kv{kv_tag}")
            if key in ops and c and gen_rows > 0:
                b = gen_rows
                kv_bytes = b * s_kv * 2 * kvpg * d * kvb
                prec = c["peak_precision"]
                ideal = max(4.0 * b * hh * d * s_kv / (pk["dense_tflops"][prec] * 1e12),
                            (kv_bytes + b * hh * d * BF16 * 2) / bw)
                fm = float(floor_model_time(c["model"], kv_bytes, ideal, b, kvpg, hh / kvpg)[()])
                pl = ideal / float(curve_eval([p[0] for p in c["points"]],
                                              [p[1] for p in c["points"]], kv_bytes))
                ratio("attention.generation", cfg["id"], step, ops[key] / L, fm, pl,
                      {"shape": f"b{b} s{s_kv} H{hh} Hkv{kvpg} kv{kv_tag}"})
    df = pd.DataFrame(rows)
    summary = {}
    for op, g in df.groupby("op"):
        ent = {"n": int(len(g))}
        for col in ("fm", "plain", "busiest"):
            if col in g and g[col].notna().any():
                v = g[col].dropna()
                ent[col] = {q_: round(float(np.quantile(v, x)), 3)
                            for q_, x in (("min", 0), ("p10", .1), ("median", .5), ("p90", .9),
                                          ("max", 1))}
                ent[col]["median_abs_log2"] = round(float(np.median(np.abs(np.log2(v)))), 3)
        summary[op] = ent
    return {"rows": df, "summary": summary}


def print_validation(out: dict) -> None:
    df = out["rows"]
    with pd.option_context("display.width", 220, "display.max_rows", 500,
                           "display.max_colwidth", 60):
        print(df.round(3).to_string(index=False))
    print("\nratio = model time / AIC per-op time per layer (fm = floor model, plain = curve "
          "points, busiest = balanced floor model on the re-simulated busiest EP rank)")
    for op, ent in out["summary"].items():
        print(op, json.dumps(ent))


def deepep_sets(curves: dict) -> dict:
    """Index of comm.deepep.* curves by scope (intra/inter node) and mode (low-latency/normal)."""
    out: dict = {}
    for k, c in curves.items():
        bm = c.get("bytes_model") if isinstance(c, dict) else None
        if bm:
            out.setdefault(bm["scope"], {}).setdefault(bm["mode"], []).append(k)
    if out:
        out["note"] = (
            "intra_node = EP8 on one node (TRT-LLM DeepEP HT/LL and SGLang normal/LL); "
            "inter_node = SGLang DeepEP EP16/32/64 on 2/4/8 nodes (the only multi-node data); "
            "low_latency = decode kernels, normal = prefill (normal / high-throughput) kernels. "
            "Each curve's bytes_model gives time_us(bytes received per GPU)"
        )
    return out


def default_db() -> Path:
    import aiconfigurator_core

    return Path(aiconfigurator_core.__file__).parent / "systems"


def check_peaks() -> str:
    try:
        sys.path.insert(0, str(REPO))
        from solver.hardware import HARDWARE_PRESETS  # type: ignore
    except Exception as exc:  # noqa: BLE001
        return f"not cross-checked (solver.hardware not importable here: {type(exc).__name__})"
    for name, p in PEAKS.items():
        hw = HARDWARE_PRESETS[name]
        assert abs(hw.hbm_tb_s - p["hbm_tb_s"]) < 1e-9, name
        for prec, v in p["tflops"].items():
            assert abs(hw.peak_tflops[prec] - v) < 1e-9, (name, prec)
    return "cross-checked against solver.hardware.HARDWARE_PRESETS"


def run_system(
    db: Path, system: str, backend: str, out_dir: Path, aic_version: str, peak_check: str
) -> Path | None:
    preset = SYSTEM_TO_PRESET[system]
    peaks = PEAKS[preset]
    spec = yaml.safe_load((db / f"{system}.yaml").read_text())
    qv = yaml.safe_load((db / "query_versions.yaml").read_text())
    cur = qv.get("overrides", {}).get(system, {}).get(backend, qv["defaults"][backend])["current"]
    data = db / spec["data_dir"]
    if not data.is_dir():
        return None

    def table(
        op_family: str, fname: str, framework: str = backend, version: str | None = cur
    ) -> Path | None:
        vd = pick_version_dir(data / op_family / framework, version)
        if vd is None:
            return None
        p = vd / fname
        if p.exists():
            return p
        # newest version that has the file
        for v in sorted(
            (data / op_family / framework).iterdir(), key=lambda q: _vkey(q.name), reverse=True
        ):
            if (v / fname).exists():
                return v / fname
        return None

    curves: dict = {}
    extra: dict = {}
    used_versions: dict = {}
    t = table("gemm", "gemm_perf.parquet")
    if t:
        c, e = gemm_curves(t, db, peaks)
        curves.update(c)
        extra.update(e)
        used_versions["gemm"] = t.parent.name
    t = table("moe", "moe_perf.parquet")
    if t:
        curves.update(moe_curves(t, db, peaks))
        used_versions["moe"] = t.parent.name
    tc, tg = (
        table("attention", "context_attention_perf.parquet"),
        table("attention", "generation_attention_perf.parquet"),
    )
    curves.update(attention_curves(tc, tg, db, peaks))
    used_versions["attention"] = (tc or tg).parent.name if (tc or tg) else None
    mc, mg = table("mla", "context_mla_perf.parquet"), table("mla", "generation_mla_perf.parquet")
    curves.update(mla_curves(mc, mg, db, peaks))
    ar = table("comm", "custom_allreduce_perf.parquet")
    nccl_ver = str(spec.get("misc", {}).get("nccl_version", ""))
    nc = table("comm", "nccl_perf.parquet", framework="nccl", version=nccl_ver)
    curves.update(comm_curves(ar, nc, db))
    used_versions["custom_allreduce"] = ar.parent.name if ar else None
    used_versions["nccl"] = nc.parent.name if nc else None
    a2a = table("comm", "moe_a2a_perf.parquet", version=None)
    inter_n = table(
        "comm", "wideep_deepep_normal_perf.parquet", framework="sglang", version="0.5.6.post2"
    )
    inter_l = table(
        "comm", "wideep_deepep_ll_perf.parquet", framework="sglang", version="0.5.6.post2"
    )
    # only keep the multi-node sglang tables when they really are the 0.5.6.post2 multi-node set
    curves.update(
        a2a_curves(
            a2a,
            inter_n if inter_n and "0.5.6.post2" in str(inter_n) else None,
            inter_l if inter_l and "0.5.6.post2" in str(inter_l) else None,
            db,
        )
    )
    used_versions["moe_a2a_trtllm"] = a2a.parent.name if a2a else None

    gpu = spec["gpu"]
    node = spec["node"]
    doc = {
        "gpu": preset,
        "source": f"aiconfigurator {aic_version} perf database, system {system}, backend "
        f"{backend} {cur}",
        "license": "Apache-2.0",
        "license_note": "derived from NVIDIA aiconfigurator's perf database (Apache-2.0); "
        "see https://github.com/ai-dynamo/aiconfigurator/blob/main/LICENSE",
        "script": "benchmarks/calibrate.py",
        "generated": _dt.date.today().isoformat(),
        "table_versions": used_versions,
        "device_in_tables": None,
        "peaks": {
            "dense_tflops": peaks["tflops"],
            "hbm_tb_s": peaks["hbm_tb_s"],
            "source": f"moeplan preset {preset} (solver/hardware.py); {peak_check}",
        },
        "definition": {
            "efficiency": "ideal_time / measured_time; ideal_time = max(FLOPs / (dense peak "
            "TFLOPS of "
            "the math precision * 1e12), bytes / (hbm_tb_s * 1e12)); time = ideal_time / "
            "efficiency(x)",
            "curve_format": "points = [[x, efficiency], ...] after smoothing; raw_median/min/max/"
            "n_series/spread_max_over_min are aligned with points; interpolate in log(x), "
            "hold the end values outside",
            "smoothing": "isotonic_increasing = least-squares non-decreasing fit (pool "
            "adjacent violators, "
            "weights = number of series) of the median, applied to attention vs sequence "
            "length / KV bytes "
            "(more work per launch cannot lower efficiency there). GEMM and MoE curves are "
            "NOT smoothed "
            "('none'): their roofline-normalised efficiency really dips near the "
            "compute/memory ridge "
            "(a max() roofline undercounts time where both limits bind) and has kernel-switch "
            "steps, so "
            "a monotone fit would overstate efficiency there. 'fit' gives a two-parameter "
            "alternative "
            "(t = t0 + ideal/e_inf) over all selected rows.",
            "floor_model": FLOOR_MODEL_FORM,
            "decode_attention_model": DECODE_MODEL_FORM,
        "comm_time_model": COMM_MODEL_FORM,
        "deepep_bytes_model": "comm.deepep.*.bytes_model: the same time model with x = bytes "
        "received per GPU per call (self included), converted from tokens per rank for the "
        "DeepSeek shape (7168, top-8, 256 experts) under uniform routing: normal/HT mode = one "
        "copy per (token, destination rank) (dedup), low-latency mode = one message per "
        "(token, expert) (no dedup, as DeepEP LL sends); dispatch element bytes per the table's "
        "dtype (bf16 2h, fp8 h + 4h/128 scales, nvfp4 h/2 + h/16), combine always bf16 2h; "
        "SGLang rows: dispatch fp8 assumed. counting in each curve gives the factors",
        "communication": "not an efficiency: achieved bandwidth (bytes/time) and latency; "
            "busbw = algbw * bus_factor (all-reduce 2(n-1)/n, gather/scatter/alltoall (n-1)/n) is "
            "comparable to a per-direction link rate (450 GB/s NVLink on H100/H200)",
        },
        "aic_constants": {
            "mem_op": "elementwise/norm ops are not measured: AIC uses "
            f"bytes/(mem_bw*{gpu.get('mem_bw_empirical_scaling_factor')})"
            f" + {gpu.get('mem_empirical_constant_latency')} s per op per layer",
            "p2p": f"not measured: AIC uses bytes/inter_node_bw({node.get('inter_node_bw')} B/s) + "
            f"p2p_latency({node.get('p2p_latency')} s) per PP hop",
            "nccl_beyond_8_gpus": "no >8-GPU NCCL/custom-all-reduce data; AIC scales the "
            "8-GPU curve by "
            "(n-1)/n * 8/7 * intra_bw/inter_bw",
        },
        "curves": curves,
        "deepep_bytes_model_sets": deepep_sets(curves),
        "extra": extra,
    }
    # device string from the gemm table, for the record
    try:
        g = table("gemm", "gemm_perf.parquet")
        doc["device_in_tables"] = (
            str(pd.read_parquet(g, columns=["device"]).device.iloc[0]) if g else None
        )
    except Exception:  # noqa: BLE001
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{preset}.json"
    out.write_text(dumps_compact(doc) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--db",
        type=Path,
        default=None,
        help="AIC systems dir (default: installed aiconfigurator_core/systems)",
    )
    ap.add_argument("--systems", default="h100_sxm,h200_sxm,b200_sxm,a100_sxm")
    ap.add_argument("--backend", default="trtllm")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--validate",
        action="store_true",
        help="compare the floor models in --out-dir with AIC's per-op latencies in "
        "benchmarks/data/aic_estimates.json (no regeneration)",
    )
    ap.add_argument(
        "--estimates", type=Path, default=REPO / "benchmarks" / "data" / "aic_estimates.json"
    )
    args = ap.parse_args(argv)
    if args.validate:
        print_validation(validate(args.out_dir, args.estimates))
        return 0
    db = args.db or default_db()
    aic_version = "unknown (--db given, aiconfigurator not installed)"
    for dist in ("aiconfigurator", "aiconfigurator-core"):
        try:
            aic_version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    peak_check = check_peaks()
    for system in args.systems.split(","):
        system = system.strip()
        out = run_system(db, system, args.backend, args.out_dir, aic_version, peak_check)
        if out is None:
            print(f"{system}: no data")
        else:
            n = len(json.loads(out.read_text())["curves"])
            print(f"{system}: wrote {out} ({out.stat().st_size // 1024} KiB, {n} curves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
