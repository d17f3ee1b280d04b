"""The one-line question (moeplan solve --model --gpu --isl --osl --ttft --tpot --rate): the
same answer as the equivalent instance file, units as a serving engineer writes them, Hugging
Face ids mapped to the bundled presets, and one-line errors with "did you mean"."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import one_error_line, run
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from moeplan.oneline import instance_document, parse_rate, parse_time
from solver.instance import InputError, instance_from_dict
from solver.models import resolve_model

FLAGS = ["--model", "Qwen/Qwen3-30B-A3B", "--gpu", "h100", "--isl", "2000", "--osl", "500",
         "--ttft", "1500ms", "--tpot", "40ms", "--rate", "5req/s"]
#: The same question written as an instance file by hand.
BY_HAND = """\
name: by-hand
model: qwen3-30b-a3b
hardware: h100-sxm
workload:
  input_len: 2000
  output_len: 500
  targets: {max_ttft_s: 1.5, max_tpot_s: 0.04, min_output_tokens_per_s: 2500}
"""


def _answer(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("solve_time_s")
    return doc


@pytest.mark.integration
def test_one_line_gives_the_answer_of_the_instance_file(runner, tmp_path) -> None:
    written = tmp_path / "question.yaml"
    one = run(runner, "solve", *FLAGS, "--json", "--write-instance", written)
    assert one.exit_code == 0, one.stderr
    by_hand = tmp_path / "by-hand.yaml"
    by_hand.write_text(BY_HAND)
    file = run(runner, "solve", by_hand, "--json")
    assert file.exit_code == 0, file.stderr
    a, b = _answer(json.loads(one.stdout)), _answer(json.loads(file.stdout))
    assert a["status"] == "OPTIMAL"
    for key in ("status", "objective", "bound", "plan", "metrics", "search_space"):
        assert a[key] == b[key], key
    # the saved instance file is the question, and solving it gives the same answer again
    saved = yaml.safe_load(written.read_text())
    assert saved["model"] == "qwen3-30b-a3b" and saved["hardware"] == "h100-sxm"
    assert saved["workload"]["targets"] == {"max_ttft_s": 1.5, "max_tpot_s": 0.04,
                                            "min_output_tokens_per_s": 2500.0}
    again = run(runner, "solve", written, "--json")
    assert _answer(json.loads(again.stdout))["plan"] == a["plan"]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5", 1.5), ("1.5s", 1.5), ("1500ms", 1.5), ("40 ms", 0.04), ("250us", 250e-6)])
def test_times(text, seconds) -> None:
    assert parse_time(text, "--ttft") == pytest.approx(seconds, rel=1e-12)


@pytest.mark.unit
def test_per_user_speed_is_a_tpot() -> None:
    assert parse_time("25tok/s", "--tpot", speed_ok=True) == pytest.approx(0.04)
    with pytest.raises(InputError):
        parse_time("25tok/s", "--ttft")


@pytest.mark.unit
@pytest.mark.parametrize(("text", "osl", "tokens_per_s"), [
    ("20000", 500, 20000), ("20k", 500, 20000), ("20000tok/s", 1, 20000), ("5req/s", 500, 2500),
    ("4rps", 1000, 4000), ("1.5k", 7, 1500)])
def test_rates(text, osl, tokens_per_s) -> None:
    assert parse_rate(text, osl) == pytest.approx(tokens_per_s)


@settings(max_examples=50, deadline=None)
@given(ms=st.integers(1, 100_000), osl=st.integers(1, 4096), rps=st.integers(1, 500))
def test_units_agree(ms, osl, rps) -> None:
    assume(ms % 10 == 0 or ms < 1000)
    assert parse_time(f"{ms}ms", "--tpot") == pytest.approx(parse_time(str(ms / 1000), "--tpot"))
    assert parse_rate(f"{rps}req/s", osl) == pytest.approx(parse_rate(str(rps * osl), osl))


@pytest.mark.unit
def test_hugging_face_ids_map_to_presets() -> None:
    doc = instance_document(model="Qwen/Qwen3-235B-A22B-FP8", gpu="h200-sxm", isl=4000, osl=500,
                            ttft="1.5", tpot="0.04", rate="20000", max_gpus=None)
    assert doc["model"] == "qwen3-235b-a22b@fp8"
    inst = instance_from_dict(doc)
    assert inst.model == resolve_model("qwen3-235b-a22b@fp8")
    assert inst.model.weight_precision == "fp8" and inst.model.weight_block_size == 128
    assert instance_document(model="deepseek-ai/DeepSeek-V3", gpu="h200", isl=1, osl=1,
                             ttft=None, tpot=None, rate=None, max_gpus=8)["model"] == \
        "deepseek-v3"


@pytest.mark.integration
@pytest.mark.parametrize(("args", "field", "hint"), [
    (["--model", "Qwen/Qwen3-235B-A22B-FP9"], "--model", "did you mean 'Qwen/Qwen3-235B-A22B-FP8'"),
    (["--model", "qwen3-235b"], "--model", "did you mean 'qwen3-235b-a22b'"),
    (["--gpu", "h2oo"], "--gpu", "did you mean"),
    (["--ttft", "fast"], "--ttft", "not a time"),
    (["--rate", "-3"], "--rate", "not a rate"),
    (["--isl", "0"], "--isl", "greater than 0"),
])
def test_bad_one_line_input_is_one_line(runner, args, field, hint) -> None:
    base = {"--model": "qwen3-30b-a3b", "--gpu": "h100-sxm", "--isl": "100", "--osl": "10"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    line = one_error_line(run(runner, "solve", *[x for kv in base.items() for x in kv]), field)
    assert hint in line


@pytest.mark.integration
def test_instance_and_one_line_flags_do_not_mix(runner, tmp_path) -> None:
    path = tmp_path / "i.yaml"
    path.write_text(BY_HAND)
    one_error_line(run(runner, "solve", path, "--model", "qwen3-30b-a3b"), "INSTANCE")
    one_error_line(run(runner, "solve", "--model", "qwen3-30b-a3b", "--gpu", "h100"), "--isl")
    one_error_line(run(runner, "solve"), "INSTANCE")
