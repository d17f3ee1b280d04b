"""The common question in one line, no YAML: ``--model --gpu --isl --osl --ttft --tpot --rate``.

:func:`instance_document` turns the flags into the instance document a file would hold (preset
names kept, so ``--write-instance`` saves exactly what was solved); ``solve`` and ``pareto``
then load it like any instance file. Units as a serving engineer writes them:

- ``--ttft`` / ``--tpot``: seconds by default, or with a unit: ``1.5s``, ``1500ms``; ``--tpot``
  also takes a per-user speed, ``25tok/s`` (TPOT = 1/25 s);
- ``--rate``: output tokens/s of the deployment (``20000``, ``20000tok/s``, ``20k``) or
  requests/s (``5req/s``, ``5rps``: times ``--osl`` output tokens each);
- ``--model``: a preset (``qwen3-235b-a22b@fp8``), a Hugging Face id of one
  (``Qwen/Qwen3-235B-A22B-FP8``, table in ``solver/export/data/hf_models.json``) or a
  ``config.json`` path; ``--gpu``: a hardware preset (``h200`` is ``h200-sxm``).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from solver.export.models import hf_aliases, preset_for
from solver.hardware import hardware_preset_names
from solver.instance import InputError
from solver.presets import MODEL_PRESETS, model_preset_names

Model = Annotated[str | None, typer.Option(
    "--model", metavar="PRESET|HF_ID|CONFIG",
    help="One-line instead of INSTANCE: a model preset, a Hugging Face id "
    "(Qwen/Qwen3-235B-A22B-FP8) or a config.json path.")]
Gpu = Annotated[str | None, typer.Option("--gpu", metavar="PRESET",
                                         help="One-line: hardware preset, e.g. h200-sxm.")]
Isl = Annotated[int | None, typer.Option("--isl", metavar="TOKENS",
                                         help="One-line: input (prompt) tokens.")]
Osl = Annotated[int | None, typer.Option("--osl", metavar="TOKENS",
                                         help="One-line: output tokens per request.")]
Ttft = Annotated[str | None, typer.Option("--ttft", metavar="TIME",
                                          help="One-line: max TTFT: 1.5, 1.5s or 1500ms.")]
Tpot = Annotated[str | None, typer.Option(
    "--tpot", metavar="TIME", help="One-line: max TPOT: 0.04, 40ms, or a per-user 25tok/s.")]
Rate = Annotated[str | None, typer.Option(
    "--rate", metavar="RATE", help="One-line: min output tokens/s of the deployment (20000, 20k, "
    "20000tok/s) or requests/s (5req/s).")]
MaxGpus = Annotated[int | None, typer.Option("--max-gpus", metavar="N",
                                             help="One-line: at most N GPUs.")]
Engine = Annotated[str | None, typer.Option(
    "--engine", metavar="NAME", help="One-line: serving engine vllm, sglang or trtllm.")]
WriteInstance = Annotated[Path | None, typer.Option(
    "--write-instance", metavar="FILE", help="Save the one-line question as an instance file.")]

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TIME = re.compile(rf"\s*{_NUMBER}\s*(s|ms|us|µs)?\s*", re.IGNORECASE)
_SPEED = re.compile(rf"\s*{_NUMBER}\s*(tok/s|tokens/s|t/s)\s*", re.IGNORECASE)
_RATE = re.compile(rf"\s*{_NUMBER}\s*(k|m)?\s*(tok/s|tokens/s|t/s|req/s|rps|requests/s)?\s*",
                   re.IGNORECASE)
_TIME_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def parse_time(text: str, flag: str, *, speed_ok: bool = False) -> float:
    """Seconds from ``1.5``, ``1.5s``, ``1500ms``; with ``speed_ok`` also ``25tok/s``."""
    m = _TIME.fullmatch(text)
    if m:
        value = float(m.group(1)) * _TIME_UNITS[(m.group(2) or "s").lower()]
    elif speed_ok and (s := _SPEED.fullmatch(text)):
        speed = float(s.group(1))
        if speed <= 0:
            raise InputError(f"{flag}: must be above 0 tok/s, got '{text}'", flag)
        value = 1.0 / speed
    else:
        more = ", or a per-user speed like 25tok/s" if speed_ok else ""
        raise InputError(f"{flag}: '{text}' is not a time (use 1.5, 1.5s or 1500ms{more})", flag)
    if not value > 0:
        raise InputError(f"{flag}: must be above 0, got '{text}'", flag)
    return value


def parse_rate(text: str, osl: int, flag: str = "--rate") -> float:
    """Output tokens/s from ``20000``, ``20k``, ``20000tok/s`` or ``5req/s`` (times ``osl``)."""
    m = _RATE.fullmatch(text)
    if not m:
        raise InputError(f"{flag}: '{text}' is not a rate (use 20000, 20k, 20000tok/s or "
                         "5req/s)", flag)
    value = float(m.group(1)) * {None: 1.0, "k": 1e3, "m": 1e6}[(m.group(2) or "").lower()
                                                              or None]
    unit = (m.group(3) or "tok/s").lower()
    if unit in ("req/s", "rps", "requests/s"):
        value *= osl
    if not value > 0:
        raise InputError(f"{flag}: must be above 0, got '{text}'", flag)
    return value


def model_value(text: str) -> str:
    """The instance's ``model`` value for ``--model``: a preset (``@precision`` kept), the
    preset a Hugging Face id names, or a config path; "did you mean" otherwise."""
    base = text.split("@", 1)[0].strip().lower()
    if base in MODEL_PRESETS:
        return text.strip()
    alias = preset_for(text)
    if alias is not None:
        return alias
    if Path(text).expanduser().exists():
        return text
    names = model_preset_names() + sorted(hf_aliases())
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.5) or \
        difflib.get_close_matches(text.lower(), [n.lower() for n in names], n=1, cutoff=0.5)
    if close:
        # report the name as spelt in the table
        lower = {n.lower(): n for n in names}
        hint = f"did you mean '{lower.get(close[0].lower(), close[0])}'? "
    else:
        hint = ""
    raise InputError(f"--model: '{text}' is neither a preset, a known Hugging Face id nor a "
                     f"config file; {hint}presets: {', '.join(model_preset_names())} (moeplan "
                     "presets lists them)", "model")


def gpu_value(text: str) -> str:
    names = hardware_preset_names()
    key = text.strip().lower()
    for candidate in (key, f"{key}-sxm", f"{key}-sxm-80gb"):
        if candidate in names:
            return candidate
    stems = {n.split("-sxm")[0]: n for n in names}  # "h200" for "h200-sxm"
    close = difflib.get_close_matches(key, list(stems) + names, n=1, cutoff=0.5)
    hint = f"did you mean '{stems.get(close[0], close[0])}'? " if close else ""
    raise InputError(f"--gpu: unknown hardware preset '{text}'; {hint}presets: "
                     f"{', '.join(names)}", "gpu")


def given(**flags: Any) -> bool:
    return any(v is not None for v in flags.values())


def instance_document(*, model: str | None, gpu: str | None, isl: int | None,
                      osl: int | None, ttft: str | None, tpot: str | None, rate: str | None,
                      max_gpus: int | None, engine: str | None = None) -> dict[str, Any]:
    """The instance file the one-line flags mean."""
    for flag, value in (("--model", model), ("--gpu", gpu), ("--isl", isl), ("--osl", osl)):
        if value is None:
            raise InputError(f"{flag}: required with the one-line flags (--model --gpu --isl "
                             "--osl, then any of --ttft --tpot --rate --max-gpus)",
                             flag.lstrip("-"))
    assert model is not None and gpu is not None and isl is not None and osl is not None
    for flag, value in (("--isl", isl), ("--osl", osl), ("--max-gpus", max_gpus)):
        if value is not None and value <= 0:
            raise InputError(f"{flag}: must be greater than 0, got {value}", flag.lstrip("-"))
    targets: dict[str, Any] = {}
    if ttft is not None:
        targets["max_ttft_s"] = parse_time(ttft, "--ttft")
    if tpot is not None:
        targets["max_tpot_s"] = parse_time(tpot, "--tpot", speed_ok=True)
    if rate is not None:
        targets["min_output_tokens_per_s"] = parse_rate(rate, osl)
    if max_gpus is not None:
        targets["max_gpus"] = max_gpus
    model_id, gpu_id = model_value(model), gpu_value(gpu)
    name = re.sub(r"[^a-z0-9.@-]+", "-", f"{model_id}-{gpu_id}".lower()).strip("-")
    doc: dict[str, Any] = {
        "name": name[:200] or "one-line",
        "description": f"moeplan one-line question: --model {model} --gpu {gpu} --isl {isl} "
        f"--osl {osl}" + "".join(f" --{k} {v}" for k, v in (
            ("ttft", ttft), ("tpot", tpot), ("rate", rate), ("max-gpus", max_gpus),
            ("engine", engine)) if v is not None),
        "model": model_id,
        "hardware": gpu_id,
        "workload": {"input_len": isl, "output_len": osl},
    }
    if targets:
        doc["workload"]["targets"] = targets
    if engine is not None:
        doc["engine"] = {"name": engine}
    return doc


def write_instance(doc: dict[str, Any], path: Path) -> None:
    if path.is_dir():
        raise InputError(f"--write-instance: {path} is a directory, expected a file name",
                         "write_instance")
    try:
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--write-instance: cannot write {path} ({exc.strerror})",
                         "write_instance") from None
