"""Each engine version's accepted options, as data with its source (``solver/export/data``).

An export never emits an option its engine version does not parse: :func:`check_command` is
called on every command before it is returned, and the tests call it again independently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

#: The engine version each export targets, and the file holding its options.
DATA_FILES = {
    "vllm": "vllm-0.11.0.json",
    "sglang": "sglang-0.5.3.json",
    "trtllm": "trtllm-00209af1.json",
}


@dataclass(frozen=True)
class EngineFlags:
    """One engine version: its options, where they were read, and (TensorRT-LLM) the keys of
    its YAML options file."""

    engine: str
    version: str
    command: str
    source: dict[str, Any]
    flags: frozenset[str]
    env: dict[str, tuple[str, ...]]
    config_keys: dict[str, tuple[str, ...]]
    data_file: str
    #: Accepted values of some options (``--option`` -> choices), where the parser lists them.
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The rest of the data file: the disaggregated pieces (``router``: SGLang's router;
    #: ``disaggregated``: ``trtllm-serve disaggregated``; ``kv_transfer``: vLLM's connector).
    sections: dict[str, Any] = field(default_factory=dict)

    def source_line(self) -> str:
        src = self.source
        where = ", ".join(src.get("files", ()))
        if src.get("commit"):
            where += f" at commit {src['commit']}"
        parts = [src.get("package", ""), where]
        if src.get("sha256"):
            parts.append(f"wheel sha256 {src['sha256']}")
        return "; ".join(x for x in parts if x)


@cache
def engine_flags(engine: str) -> EngineFlags:
    name = DATA_FILES[engine]
    data = json.loads(resources.files("solver.export").joinpath("data", name).read_text())
    return EngineFlags(
        engine=data["engine"], version=data["version"], command=data["command"],
        source=data["source"], flags=frozenset(data["flags"]),
        env={k: tuple(v) for k, v in data.get("env", {}).items()},
        config_keys={k: tuple(v) for k, v in data.get("config_keys", {}).items()},
        data_file=f"solver/export/data/{name}",
        values={k: tuple(v) for k, v in data.get("values", {}).items()},
        sections={k: data[k] for k in ("router", "disaggregated", "kv_transfer") if k in data})


def option_names(argv: list[str]) -> list[str]:
    """The option names in a command line (``--x`` and the ``--x`` of ``--x=value``)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def _check_values(what: str, argv: list[str], values: dict[str, tuple[str, ...]]) -> None:
    for i, arg in enumerate(argv):
        name, eq, inline = arg.partition("=")
        choices = values.get(name)
        if choices is None:
            continue
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if value not in choices:
            raise ValueError(f"{what}: {name} {value} is not one of {', '.join(choices)}")


def check_command(engine: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Raise ``ValueError`` naming any option (or environment value) the engine version does not
    accept: an export that emits one is a bug. An environment variable listed with no values
    takes any value (an address)."""
    known = engine_flags(engine)
    unknown = [f for f in option_names(argv) if f not in known.flags]
    if unknown:
        raise ValueError(f"{engine} {known.version} has no option {', '.join(unknown)} "
                         f"({known.data_file})")
    _check_values(f"{engine} {known.version}", argv, known.values)
    for key, value in (env or {}).items():
        choices = known.env.get(key)
        if choices and value not in choices:
            raise ValueError(f"{engine} {known.version}: {key}={value} is not one of "
                             f"{', '.join(choices)}")


def check_section_command(engine: str, section: str, argv: list[str]) -> None:
    """Like :func:`check_command` for the other program of a disaggregated deployment: SGLang's
    router (``router``) or ``trtllm-serve disaggregated`` (``disaggregated``)."""
    known = engine_flags(engine)
    data = known.sections[section]
    flags = set(data["flags"])
    unknown = [a for a in argv if a.startswith("-") and not a[1:].lstrip("-").isdigit()
               and a.split("=", 1)[0] not in flags]
    if unknown:
        raise ValueError(f"{data['command']} ({data.get('version', known.version)}) has no "
                         f"option {', '.join(unknown)} ({known.data_file}, {section})")
    _check_values(data["command"], argv, {k: tuple(v) for k, v in
                                          data.get("values", {}).items()})
