"""The README and docs/seeds.md say exactly what moeplan prints (issue 13): every fenced block
of those files whose first line is ``$ moeplan ...`` is run, in order, in a scratch directory
that sees the repo's ``instances/`` (so files one command writes, such as ``--out front``, feed
the next), and the block must equal the command's standard output line for line. Two things may
differ: elapsed times (``solved in 0.69 s``, ``in 9.7 s``), which a sample cannot fix, and what
follows a line ``...``, which marks the sample as cut there.

``python tests/test_readme.py --update`` rewrites those blocks from real output (times and cuts
kept as written); review the diff before committing it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The files whose samples are golden: README first (its samples write files later ones read).
FILES = (README, REPO / "docs" / "seeds.md")
FENCE = re.compile(r"^```[a-z]*\n(\$ moeplan [^\n]*)\n(.*?)^```\n", re.S | re.M)
#: Elapsed times: the only part of a sample that cannot be fixed.
TIMES = [re.compile(r"(solved in )\d+\.\d+( s)"), re.compile(r"( in )\d+\.\d+( s \()"),
         re.compile(r"(point\(s\) in )\d+\.\d+( s)")]
CUT = "..."


def blocks(text: str) -> list[tuple[str, list[str], tuple[int, int]]]:
    """(command line, expected lines, span of the expected lines in ``text``) per sample."""
    return [(m.group(1)[2:], m.group(2).splitlines(), m.span(2)) for m in FENCE.finditer(text)]


def normalise(line: str) -> str:
    for pattern in TIMES:
        line = pattern.sub(r"\1T\2", line)
    return line.rstrip()


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[0] == "moeplan", command
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "moeplan", *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def compare(expected: list[str], actual: list[str]) -> list[str]:
    """Differences as readable lines; empty when the sample matches."""
    problems = []
    for i, want in enumerate(expected):
        if want == CUT:
            return problems
        got = actual[i] if i < len(actual) else "<no line>"
        if normalise(want) != normalise(got):
            problems.append(f"line {i + 1}:\n  README: {want!r}\n  output: {got!r}")
    if len(actual) > len(expected):
        problems.append(f"output continues after the sample's last line: {actual[len(expected)]!r}"
                        " (end the sample with '...' if it is cut on purpose)")
    return problems


SAMPLES = [(command, lines, span, path) for path in FILES
           for command, lines, span in blocks(path.read_text())]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> list[subprocess.CompletedProcess]:
    """Every sample run once, in README order (a later one may read what an earlier wrote)."""
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "instances").symlink_to(REPO / "instances")
    return [run(command, cwd) for command, _, _, _ in SAMPLES]


def test_the_readme_has_samples() -> None:
    commands = [c for c, _, _, _ in SAMPLES]
    assert len(commands) >= 5, commands
    assert any(c.startswith("moeplan solve --model") for c in commands)  # the one-line flow
    assert any("INFEASIBLE" in "\n".join(lines) for _, lines, _, _ in SAMPLES)
    assert {path for _, _, _, path in SAMPLES} == set(FILES)


@pytest.mark.parametrize("index", range(len(SAMPLES)),
                         ids=[f"{p.name}: {c[:60]}" for c, _, _, p in SAMPLES])
def test_readme_sample_matches_real_output(outputs, index: int) -> None:
    command, expected, _, _ = SAMPLES[index]
    result = outputs[index]
    assert "Traceback" not in result.stderr, result.stderr
    problems = compare(expected, result.stdout.splitlines())
    assert not problems, f"`{command}` (exit {result.returncode}):\n" + "\n".join(problems)


def update() -> None:
    """Rewrite every sample from real output, keeping the cuts and times as written."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "instances").symlink_to(REPO / "instances")
        for path in FILES:
            text = path.read_text()
            out, last = [], 0
            for command, expected, (a, b) in blocks(text):
                actual = run(command, cwd).stdout.splitlines()
                cut = expected.index(CUT) if CUT in expected else None
                new = actual[:cut] + [CUT] if cut is not None and len(actual) > cut else actual
                out += [text[last:a], "\n".join(new) + "\n"]
                last = b
                print(f"{path.name}: {command}: {len(new)} lines", file=sys.stderr)
            out.append(text[last:])
            path.write_text("".join(out))


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit("usage: python tests/test_readme.py --update")
