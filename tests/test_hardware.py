"""Unit tests of solver.hardware: presets, lookup, overrides and the seed card."""

from __future__ import annotations

import pydantic
import pytest

from solver.hardware import (
    DEFAULT_MFU,
    HARDWARE_PRESETS,
    UnknownHardwareError,
    hardware_preset_names,
    load_hardware_preset,
    resolve_hardware,
)
from solver.schema import HardwareSpec

pytestmark = pytest.mark.unit

EXPECTED_NAMES = [
    "h100-sxm",
    "h200-sxm",
    "h800-sxm",
    "a100-sxm-80gb",
    "b200",
    "mi300x",
    "l40s",
    "seed-card",
]
REAL_GPUS = [n for n in EXPECTED_NAMES if n != "seed-card"]


def test_names_listed_in_stable_order() -> None:
    assert hardware_preset_names() == EXPECTED_NAMES
    assert list(HARDWARE_PRESETS) == EXPECTED_NAMES


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_preset_validates_and_round_trips(name: str) -> None:
    spec = load_hardware_preset(name)
    assert isinstance(spec, HardwareSpec)
    assert spec.name == name
    # Re-validating the dumped fields gives the same spec: no value depends on construction order.
    assert HardwareSpec.model_validate(spec.model_dump()) == spec
    assert spec.reserved_gb < spec.hbm_gb
    assert spec.notes, "every preset states its sources"


@pytest.mark.parametrize("name", REAL_GPUS)
def test_real_gpus_share_one_documented_default(name: str) -> None:
    spec = HARDWARE_PRESETS[name]
    assert spec.mfu == DEFAULT_MFU
    assert spec.hbm_efficiency == 0.8
    assert spec.comm_efficiency == 0.8
    assert spec.reserved_gb == 3.0
    # Lower precision is never slower than higher precision on the same GPU.
    order = ["fp32", "bf16", "fp8", "fp4"]
    rates = [spec.peak_tflops[p] for p in order if p in spec.peak_tflops]
    assert rates == sorted(rates)
    assert spec.peak_tflops["bf16"] == spec.peak_tflops["fp16"]


@pytest.mark.parametrize(
    ("name", "bf16", "hbm_gb", "hbm_tb_s", "intra", "inter"),
    [
        ("h100-sxm", 989.5, 80, 3.35, 450, 50),
        ("h200-sxm", 989.5, 141, 4.8, 450, 50),
        ("h800-sxm", 989.5, 80, 3.35, 200, 50),
        ("a100-sxm-80gb", 312, 80, 2.039, 300, 25),
        ("b200", 2250, 180, 8.0, 900, 50),
        ("mi300x", 1307.4, 192, 5.3, 448, 50),
        ("l40s", 362.05, 48, 0.864, 32, 25),
    ],
)
def test_datasheet_figures(
    name: str, bf16: float, hbm_gb: float, hbm_tb_s: float, intra: float, inter: float
) -> None:
    spec = HARDWARE_PRESETS[name]
    assert spec.peak_tflops["bf16"] == pytest.approx(bf16)
    assert spec.hbm_gb == pytest.approx(hbm_gb)
    assert spec.hbm_tb_s == pytest.approx(hbm_tb_s)
    assert spec.intra_node_gb_s == pytest.approx(intra)
    assert spec.inter_node_gb_s == pytest.approx(inter)


def test_precisions_only_where_the_hardware_has_them() -> None:
    for hopper in ("h100-sxm", "h200-sxm", "h800-sxm"):
        assert not {"fp4", "mxfp4"} & set(HARDWARE_PRESETS[hopper].peak_tflops)
    assert "fp8" not in HARDWARE_PRESETS["a100-sxm-80gb"].peak_tflops
    assert HARDWARE_PRESETS["b200"].peak_tflops["fp4"] == 9000
    assert HARDWARE_PRESETS["b200"].peak_tflops["mxfp4"] == 9000
    for name in ("mi300x", "l40s", "a100-sxm-80gb"):
        assert not {"fp4", "mxfp4"} & set(HARDWARE_PRESETS[name].peak_tflops)


def test_seed_card_has_exactly_the_seed_numbers() -> None:
    seed = load_hardware_preset("seed-card")
    # Stated by the seeds.
    assert seed.peak_tflops == {"bf16": 400.0, "fp16": 400.0, "fp8": 400.0}
    assert seed.mfu == 0.6
    assert seed.hbm_gb == 64.0
    assert seed.hbm_tb_s == 1.8
    assert seed.hbm_efficiency == 0.8
    # Assumptions (the seeds are silent), stated in notes and docs/hardware.md.
    assert seed.gpus_per_node == 8
    assert seed.intra_node_gb_s == 400.0
    assert seed.inter_node_gb_s == 50.0
    assert seed.reserved_gb == 2.0
    assert "ASSUMPTIONS" in seed.notes


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownHardwareError) as err:
        load_hardware_preset("h100-pcie")
    message = str(err.value)
    assert "h100-pcie" in message
    for name in EXPECTED_NAMES:
        assert name in message
    assert isinstance(err.value, ValueError)
    assert err.value.valid_names == EXPECTED_NAMES


def test_unknown_name_via_resolve_and_via_preset_key() -> None:
    with pytest.raises(UnknownHardwareError, match="h100-sxm"):
        resolve_hardware("tpu-v5")
    with pytest.raises(UnknownHardwareError, match="Did you mean 'h200-sxm'"):
        resolve_hardware({"preset": "h200sxm", "gpus_per_node": 4})


def test_lookup_ignores_case_and_spaces() -> None:
    assert load_hardware_preset("  H100-SXM ") is HARDWARE_PRESETS["h100-sxm"]


def test_resolve_name_and_explicit_fields() -> None:
    assert resolve_hardware("b200") is HARDWARE_PRESETS["b200"]
    explicit = HARDWARE_PRESETS["h100-sxm"].model_dump()
    explicit["name"] = "my-gpu"
    spec = resolve_hardware(explicit)
    assert spec.name == "my-gpu"
    assert spec.peak_tflops == HARDWARE_PRESETS["h100-sxm"].peak_tflops
    assert resolve_hardware(spec) is spec


def test_explicit_fields_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="mfu"):
        resolve_hardware({**HARDWARE_PRESETS["h100-sxm"].model_dump(), "mfu": 1.5})
    with pytest.raises(pydantic.ValidationError, match="hbm_gb"):
        resolve_hardware({"name": "incomplete", "peak_tflops": {"bf16": 100}})


def test_override_fields() -> None:
    spec = resolve_hardware({"preset": "h100-sxm", "gpus_per_node": 4})
    base = HARDWARE_PRESETS["h100-sxm"]
    assert spec.gpus_per_node == 4
    assert spec.hbm_gb == base.hbm_gb
    assert spec.peak_tflops == base.peak_tflops
    assert spec.name == "h100-sxm (modified)"
    assert "gpus_per_node=4" in spec.notes
    assert base.gpus_per_node == 8, "the preset itself is untouched"


def test_override_name_notes_and_no_override() -> None:
    spec = resolve_hardware({"preset": "b200", "name": "b200-192gb", "hbm_gb": 192, "notes": "x"})
    assert (spec.name, spec.hbm_gb, spec.notes) == ("b200-192gb", 192.0, "x")
    assert resolve_hardware({"preset": "mi300x"}) is HARDWARE_PRESETS["mi300x"]


def test_peak_tflops_override_merges_per_precision() -> None:
    spec = resolve_hardware({"preset": "h100-sxm", "peak_tflops": {"bf16": 900, "int4": 1500}})
    assert spec.peak_tflops["bf16"] == 900
    assert spec.peak_tflops["int4"] == 1500
    assert spec.peak_tflops["fp8"] == HARDWARE_PRESETS["h100-sxm"].peak_tflops["fp8"]


def test_overrides_are_revalidated() -> None:
    with pytest.raises(pydantic.ValidationError, match="reserved_gb"):
        resolve_hardware({"preset": "l40s", "reserved_gb": 48})
    with pytest.raises(pydantic.ValidationError, match="reserved_gb"):
        resolve_hardware({"preset": "h100-sxm", "hbm_gb": 2})
    with pytest.raises(pydantic.ValidationError, match="gpus_per_node"):
        resolve_hardware({"preset": "h100-sxm", "gpus_per_node": 0})
    with pytest.raises(pydantic.ValidationError, match="nvlink_gb_s"):
        resolve_hardware({"preset": "h100-sxm", "nvlink_gb_s": 900})
    with pytest.raises(pydantic.ValidationError, match="peak_tflops"):
        resolve_hardware({"preset": "h100-sxm", "peak_tflops": {"fp6": 100}})
    with pytest.raises(pydantic.ValidationError, match="peak_tflops"):
        resolve_hardware({"preset": "h100-sxm", "peak_tflops": {"bf16": -1}})


def test_bad_types_are_clean_errors() -> None:
    with pytest.raises(ValueError, match="preset name"):
        resolve_hardware(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hardware.preset"):
        resolve_hardware({"preset": 7})
    with pytest.raises(UnknownHardwareError):
        load_hardware_preset(None)  # type: ignore[arg-type]


def test_presets_are_immutable() -> None:
    with pytest.raises(pydantic.ValidationError):
        HARDWARE_PRESETS["h100-sxm"].gpus_per_node = 4  # type: ignore[misc]
