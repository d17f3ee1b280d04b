"""Regenerate an engine's flag list (``solver/export/data/*.json``) from its argument parser source.

Reads the parser code as text (``ast``, nothing is imported, so the engine need not be
installed) and lists every option string it registers:

- vLLM (``vllm/engine/arg_utils.py`` and ``vllm/entrypoints/openai/cli_args.py``): every
  ``"--..."`` string in an ``add_argument`` call, the ``FrontendArgs`` fields (registered in a loop
  as ``--field-name``), and ``--no-...`` for the options argparse's ``BooleanOptionalAction``
  creates (boolean engine and frontend fields);
- SGLang (``sglang/srt/server_args.py``): every ``"--..."`` string in an ``add_argument`` call;
- sglang-router (``sglang_router/router_args.py``, before 0.2 ``launch_router.py``): the same, with
  the ``f"--{prefix}..."`` options read as ``python -m sglang_router.launch_router`` registers
  them (``use_router_prefix=False``: an empty prefix).

Usage (from a downloaded wheel, e.g. ``pip download --no-deps vllm==0.11.0``)::

    python -m solver.export.extract_flags vllm vllm-0.11.0-*.whl > solver/export/data/vllm.json
    python -m solver.export.extract_flags sglang-router sglang_router-0.2.0-*.whl  # the router

TensorRT-LLM's ``trtllm-serve`` is a ``click`` command whose wheel is not on PyPI; its list was
read from ``tensorrt_llm/commands/serve.py`` and is kept by hand (the data file names the commit).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path


def _text(node: ast.AST, names: dict[str, str]) -> str | None:
    """A string constant, or an f-string whose every placeholder is a name in ``names``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name) \
                    and value.value.id in names:
                parts.append(names[value.value.id])
            else:
                return None
        return "".join(parts)
    return None


def _option_strings(tree: ast.AST, names: dict[str, str] | None = None) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for arg in node.args:
                text = _text(arg, names or {})
                if text is not None and text.startswith("--"):
                    out.add(text)
        # deprecated options registered in a loop over ("--name", type) tuples
        if isinstance(node, ast.Tuple) and node.elts and isinstance(node.elts[0], ast.Constant) \
                and isinstance(node.elts[0].value, str) and node.elts[0].value.startswith("--"):
            out.add(node.elts[0].value)
    return out


def _bool_fields(tree: ast.AST, class_name: str) -> dict[str, bool]:
    """Field name -> whether its annotation contains ``bool`` (argparse BooleanOptionalAction)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    out[item.target.id] = "bool" in ast.unparse(item.annotation)
    return out


def vllm_flags(arg_utils: str, cli_args: str) -> list[str]:
    engine_tree, cli_tree = ast.parse(arg_utils), ast.parse(cli_args)
    flags = _option_strings(engine_tree) | _option_strings(cli_tree)
    engine_bools = _bool_fields(engine_tree, "EngineArgs")
    for flag in list(flags):
        if engine_bools.get(flag[2:].replace("-", "_")):
            flags.add("--no-" + flag[2:])
    for name, is_bool in _bool_fields(cli_tree, "FrontendArgs").items():
        flags.add("--" + name.replace("_", "-"))
        if is_bool:
            flags.add("--no-" + name.replace("_", "-"))
    return sorted(flags)


def sglang_flags(server_args: str) -> list[str]:
    return sorted(_option_strings(ast.parse(server_args)))


def sglang_router_flags(*sources: str) -> list[str]:
    """``python -m sglang_router.launch_router``'s options: ``RouterArgs.add_cli_args`` with
    ``use_router_prefix=False`` (the prefix of every ``f"--{prefix}..."`` option is empty)."""
    out: set[str] = set()
    for source in sources:
        out |= _option_strings(ast.parse(source), {"prefix": ""})
    return sorted(out)


def main(argv: list[str]) -> None:
    engine, wheel = argv[0], Path(argv[1])
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as zf:
        def read(name: str) -> str:
            return zf.read(name).decode()
        if engine == "vllm":
            files = ["vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py"]
            flags = vllm_flags(*(read(f) for f in files))
        elif engine == "sglang":
            files = ["sglang/srt/server_args.py"]
            flags = sglang_flags(read(files[0]))
        elif engine == "sglang-router":
            names = set(zf.namelist())
            files = [f for f in ("sglang_router/router_args.py", "sglang_router/launch_router.py")
                     if f in names]
            flags = sglang_router_flags(*(read(f) for f in files))
        else:
            raise SystemExit(f"unknown engine {engine!r}")
    json.dump({"wheel": wheel.name, "wheel_sha256": digest, "files": files, "flags": flags},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
