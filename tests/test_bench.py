"""``moeplan bench``: the JSON-lines contract, resume (also after SIGKILL and a torn write), the
md/csv reports, the exit code, and the Ray executor on a real local Ray (2 CPUs) against the
process pool, run from a directory whose ``moeplan/`` folder would shadow the package."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moeplan import bench
from moeplan.cli import app
from solver.instance import InputError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]

#: Instances that solve (and whose reference search finishes) in well under a second.
FAST = (
    "instances/seeds/002-moe-30b-ep64.yaml",
    "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml",
    "instances/sweep/experts-small-e032-l40s.yaml",
    "instances/sweep/preset-mixtral-8x7b-b200.yaml",
)
#: Planner fast, reference search runs into its time limit (TIMEOUT): a slow instance on demand.
SLOW = "instances/sweep/infeasible-ttft-qwen3-30b-a3b-h100.yaml"

BAD = ("model: no-such-model\nhardware: h100-sxm\n"
       "workload: {input_len: 8, output_len: 8, batch: 1}\n")

RECORD_KEYS = {
    "schema", "path", "sha256", "name", "status", "error", "gpus", "bound", "gap",
    "wall_time_s", "solve_time_s", "metrics", "plan", "explanation", "placement", "reference",
    "same_gpus", "time_ratio", "versions", "settings", "host", "finished_at",
}


def copy_instances(dest: Path, names=FAST, prefix: str = "") -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        target = dest / f"{prefix}{i:02d}-{Path(name).name}"
        shutil.copy(REPO / name, target)
        out.append(target)
    return out


def lines_of(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "every record ends with a newline"
    return [json.loads(line) for line in data.decode().splitlines()]


def assert_clean_line(text: str) -> None:
    """One line of plain text: no newline, no terminal colour codes, no traceback."""
    assert text and "\n" not in text and "\x1b" not in text, repr(text)
    assert "Traceback" not in text and 'File "' not in text, text


def assert_errors_listed_once(output: str, errors: dict[str, str]) -> None:
    """Each errored instance is one clean ``ERROR path: message`` line, printed once (rich's own
    colours, should the environment force them, aside)."""
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    for path, message in errors.items():
        lines = [line for line in output.splitlines() if line.startswith(f"ERROR {path}: ")]
        assert len(lines) == 1, output
        assert message in lines[0]
        assert_clean_line(lines[0])
        assert sum(message in line for line in output.splitlines()) == 1, output


def run(*args: str, cwd: Path):
    """``moeplan ...`` in-process, in ``cwd`` (records store paths relative to it)."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One bench run over the fast instances plus two bad files, with reports and plots."""
    root = tmp_path_factory.mktemp("bench")
    inst = root / "inst"
    files = copy_instances(inst / "nested")
    (inst / "bad.yaml").write_text(BAD)
    (inst / "broken.json").write_text("{not json")
    (inst / "notes.txt").write_text("not an instance: ignored")
    result = run("bench", "inst", "--out", "results.jsonl", "--workers", "2",
                 "--solver-workers", "1", "--reference-time-limit", "5",
                 "--report", "md", "--plots", "plots", cwd=root)
    return root, files, result


def test_errored_instances_make_bench_exit_1(first_run):
    _, _, result = first_run
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "bench: 2 of 6 instances are ERROR" in result.stderr
    # The reports are written all the same.
    assert "results: results.jsonl" in result.stdout


def test_jsonl_contract(first_run):
    root, files, result = first_run
    records = lines_of(root / "results.jsonl")
    expected = sorted([f"inst/nested/{f.name}" for f in files] + ["inst/bad.yaml",
                                                                  "inst/broken.json"])
    assert sorted(r["path"] for r in records) == expected  # each exactly once, .txt ignored
    for rec in records:
        assert set(rec) == RECORD_KEYS
        assert rec["schema"] == bench.RECORD_SCHEMA
        digest = hashlib.sha256((root / rec["path"]).read_bytes()).hexdigest()
        assert rec["sha256"] == digest
        assert set(rec["versions"]) == {"moeplan", "ortools", "python"}
        assert rec["status"] in bench.STATUSES
    by_path = {r["path"]: r for r in records}
    for bad in ("inst/bad.yaml", "inst/broken.json"):
        rec = by_path[bad]
        assert rec["status"] == "ERROR"
        assert_clean_line(rec["error"])
        assert rec["gpus"] is None and rec["reference"] is None
    assert "no-such-model" in by_path["inst/bad.yaml"]["error"]
    assert "invalid JSON" in by_path["inst/broken.json"]["error"]
    for f in files:
        rec = by_path[f"inst/nested/{f.name}"]
        assert rec["status"] == "OPTIMAL"
        assert rec["gpus"] == rec["bound"] and rec["gap"] == 0
        assert rec["wall_time_s"] > 0 and rec["metrics"]["ttft_s"] > 0
        d = rec["plan"]["degrees"]
        assert d["replicas"] * d["pp"] * d["tp"] * d["cp"] * d["dp"] == rec["gpus"]
        ref = rec["reference"]
        assert ref["status"] == "OPTIMAL" and ref["time_limit_s"] == 5
        assert rec["same_gpus"] is True and ref["gpus"] == rec["gpus"]
        assert rec["time_ratio"] == pytest.approx(rec["wall_time_s"] / ref["time_s"])
        pl = rec["placement"]
        assert pl["moe_layers"] > 0
        assert pl["hottest_load_max"] <= pl["greedy_hottest_load_max"] + 1e-12
    # The terminal summary names every instance and each error's message, once.
    assert "moeplan bench: 6 instances" in result.stdout
    assert_errors_listed_once(result.stdout + result.stderr, {
        "inst/bad.yaml": "no-such-model", "inst/broken.json": "invalid JSON"})
    assert "same GPU count as the reference" in result.stdout


def test_markdown_report_and_cactus_plot(first_run):
    root, files, _ = first_run
    text = (root / "results.md").read_text()
    assert text.startswith("## Bench results")
    assert "| median planner time / reference time (where it finished) |" in text
    assert "| same GPU count as the reference (where it finished) | 4 of 4 |" in text
    assert "median hottest-rank load planner / greedy EPLB" in text
    table = [line for line in text.splitlines() if line.startswith("| inst/")]
    assert len(table) == 6
    assert any("ERROR: " in line and "no-such-model" in line for line in table)
    png = (root / "plots" / "cactus.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_csv_report_from_resume(first_run, tmp_path):
    root, files, _ = first_run
    before = (root / "results.jsonl").read_bytes()
    out = tmp_path / "report.csv"
    result = run("bench", "inst", "--out", "results.jsonl", "--resume", "--report", "csv",
                 "--report-out", out, cwd=root)
    assert result.exit_code == 1, result.stderr  # the two ERROR records are still there
    assert (root / "results.jsonl").read_bytes() == before  # nothing re-solved
    assert "resume: 6 of 6 instances already in" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == list(bench.ROW_FIELDS)
    assert len(rows) == 7 and rows[-1]["instance"] == "MEDIAN"
    assert rows[-1]["same_gpus"] == "4/4"
    solved = [r for r in rows[:-1] if r["status"] == "OPTIMAL"]
    assert len(solved) == 4
    assert all(r["same_gpus"] == "True" and float(r["planner_s"]) > 0 for r in solved)
    assert float(rows[-1]["planner_s"]) > 0


def test_resume_resolves_an_edited_file(tmp_path):
    files = copy_instances(tmp_path / "inst", FAST[:2])
    args = ("bench", "inst", "--out", "r.jsonl", "--workers", "1", "--no-reference")
    assert run(*args, cwd=tmp_path).exit_code == 0
    assert len(lines_of(tmp_path / "r.jsonl")) == 2
    # Without --resume an existing results file is refused (one line, exit 2).
    refused = run(*args, cwd=tmp_path)
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --out:")
    with files[0].open("a") as f:
        f.write("# edited\n")
    assert run(*args, "--resume", cwd=tmp_path).exit_code == 0
    records = lines_of(tmp_path / "r.jsonl")
    assert len(records) == 3
    edited = [r for r in records if r["path"] == f"inst/{files[0].name}"]
    assert len(edited) == 2 and edited[0]["sha256"] != edited[1]["sha256"]
    assert edited[1]["reference"] is None and edited[1]["same_gpus"] is None
    # --overwrite starts again.
    assert run(*args, "--overwrite", cwd=tmp_path).exit_code == 0
    assert len(lines_of(tmp_path / "r.jsonl")) == 2


def test_resume_after_sigkill_and_torn_write(tmp_path):
    fast = copy_instances(tmp_path / "inst", FAST[:2], prefix="a")
    slow = copy_instances(tmp_path / "inst", (SLOW, SLOW), prefix="b")
    last = copy_instances(tmp_path / "inst", FAST[2:3], prefix="c")
    everything = fast + slow + last
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "moeplan", "bench", "inst", "--out", "r.jsonl", "--workers",
           "1", "--reference-time-limit", "3"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 1:
                break
            assert proc.poll() is None, "bench finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no result line within 60 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = lines_of(out)
    assert 1 <= len(written) < len(everything)
    with out.open("ab") as f:  # a torn write: half a record, no newline
        f.write(b'{"schema":"moeplan.bench/1","path":"inst/a00-')
    torn = bench.read_records(out)
    assert torn.partial_tail and len(torn.records) == len(written)

    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "partial line" in resumed.stderr
    records = lines_of(out)  # every line parses
    paths = [r["path"] for r in records]
    assert sorted(paths) == sorted(f"inst/{f.name}" for f in everything)  # each exactly once
    assert records[: len(written)] == written  # nothing already written was lost or changed
    by_path = {r["path"]: r for r in records}
    for f in slow:
        rec = by_path[f"inst/{f.name}"]
        assert rec["status"] == "INFEASIBLE"
        assert rec["reference"]["status"] in ("TIMEOUT", "INFEASIBLE")


def test_read_and_repair_torn_lines(tmp_path):
    out = tmp_path / "r.jsonl"
    good = {"path": "a.yaml", "sha256": "x", "status": "OPTIMAL"}
    out.write_bytes(bench.encode_record(good) + b"not json\n" + bench.encode_record(good)
                    + b'{"path": "b.ya')
    read = bench.read_records(out)
    assert read.records == [good, good] and read.bad_lines == [2] and read.partial_tail
    with bench.ResultsFile(out) as results:
        assert results.repaired == len(b'{"path": "b.ya')
        results.append({**good, "path": "c.yaml", "value": float("nan")})
    read = bench.read_records(out)
    assert not read.partial_tail
    assert [r["path"] for r in read.records] == ["a.yaml", "a.yaml", "c.yaml"]
    assert read.records[-1]["value"] is None  # JSON has no NaN
    only_torn = tmp_path / "t.jsonl"
    only_torn.write_bytes(b'{"pa')
    assert bench.read_records(only_torn).records == []
    with bench.ResultsFile(only_torn):
        pass
    assert only_torn.read_bytes() == b""


def test_discover_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.yaml", "b/a.json", "c.yml", "skip.txt"):
        (tmp_path / name).write_text("x")
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        found = [bench.display_path(p) for p in bench.discover([".", "c.yml"])]
        assert found == ["b/a.json", "b/z.yaml", "c.yml"]
        with pytest.raises(InputError, match="no such file"):
            bench.discover(["missing"])
    finally:
        os.chdir(old)


def test_same_gpus_semantics():
    ok = {"status": "OPTIMAL", "gpus": 4}
    assert bench.same_gpus("OPTIMAL", 4, ok) is True
    assert bench.same_gpus("OPTIMAL", 8, ok) is False
    assert bench.same_gpus("INFEASIBLE", None, ok) is False
    assert bench.same_gpus("INFEASIBLE", None, {"status": "INFEASIBLE", "gpus": None}) is True
    assert bench.same_gpus("OPTIMAL", 4, {"status": "TIMEOUT", "gpus": None}) is None
    assert bench.same_gpus("OPTIMAL", 4, None) is None


@pytest.mark.parametrize("args, field", [
    (["--resume", "--overwrite"], "--overwrite"),
    (["--workers", "0"], "--workers"),
    (["--time-limit", "-1"], "--time-limit"),
    (["--reference-time-limit", "0"], "--reference-time-limit"),
    (["--report-out", "x.txt"], "--report-out"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address"),
    (["--executor", "dask"], "--executor"),
])
def test_bad_options_are_one_line(tmp_path, args, field):
    copy_instances(tmp_path / "inst", FAST[:1])
    result = run("bench", "inst", "--out", "r.jsonl", *args, cwd=tmp_path)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0]
    assert not (tmp_path / "r.jsonl").exists() or not (tmp_path / "r.jsonl").read_bytes()


def test_missing_path_is_one_line(tmp_path):
    result = run("bench", "nowhere", "--out", "r.jsonl", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: PATH: nowhere: no such file or directory"


def test_ray_missing_is_one_line(tmp_path, monkeypatch):
    copy_instances(tmp_path / "inst", FAST[:1])
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = run("bench", "inst", "--out", "r.jsonl", "--executor", "ray", cwd=tmp_path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install ray" in lines[0], result.stderr




# ----------------------------------------------------------------------------------------------
# Ray, really started: a local instance with 2 CPUs
# ----------------------------------------------------------------------------------------------

#: What a ``moeplan/`` (or ``solver/``) folder in the current directory runs if it is imported in
#: place of the installed package: Ray used to put that directory first on workers' sys.path.
SHADOW_MESSAGE = "a folder in the current directory shadowed the installed package"


def shadowing_dir(root: Path) -> Path:
    for package in ("moeplan", "solver"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"raise ImportError({SHADOW_MESSAGE!r})\n")
    return root


def moeplan_command() -> list[str]:
    """The installed ``moeplan`` script, as a user runs it (its sys.path starts with the script's
    directory, not the current one); else ``python -I -m moeplan`` (no current directory either)."""
    script = Path(sys.executable).with_name("moeplan")
    return [str(script)] if script.is_file() else [sys.executable, "-I", "-m", "moeplan"]


def plain_env() -> dict[str, str]:
    """The environment without variables that make rich colour a pipe."""
    drop = {"FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_ray_bench_from_a_directory_that_shadows_moeplan(first_run, tmp_path):
    pytest.importorskip("ray")
    root = shadowing_dir(tmp_path)
    files = copy_instances(root / "inst", FAST[:3])
    (root / "inst" / "bad.yaml").write_text(BAD)
    proc = subprocess.run(
        [*moeplan_command(), "bench", "inst", "--executor", "ray", "--workers", "2",
         "--solver-workers", "1", "--reference-time-limit", "5", "--out", "r.jsonl"],
        cwd=root, env=plain_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)  # bad.yaml is an ERROR
    assert "bench: 1 of 4 instances are ERROR" in proc.stderr
    output = proc.stdout + proc.stderr
    assert "\x1b" not in output and SHADOW_MESSAGE not in output
    assert_errors_listed_once(output, {"inst/bad.yaml": "no-such-model"})
    records = {r["path"]: r for r in lines_of(root / "r.jsonl")}
    assert len(records) == 4
    assert records["inst/bad.yaml"]["status"] == "ERROR"
    assert_clean_line(records["inst/bad.yaml"]["error"])
    # The good instances are solved by the installed package, with the answers the process pool
    # gave for the same files (first_run) and the exhaustive reference search's GPU count.
    pool = {Path(r["path"]).name: r for r in lines_of(first_run[0] / "results.jsonl")}
    for f in files:
        rec = records[f"inst/{f.name}"]
        assert rec["settings"]["executor"] == "ray"
        assert rec["status"] == "OPTIMAL" and rec["same_gpus"] is True, rec["error"]
        assert rec["gpus"] == rec["reference"]["gpus"] == pool[f.name]["gpus"]
        assert rec["sha256"] == pool[f.name]["sha256"]


def test_ray_executor_in_process_and_failed_tasks(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    root = shadowing_dir(tmp_path)
    copy_instances(root / "inst", FAST[:2])
    monkeypatch.chdir(root)
    options = bench.BenchOptions(solver_workers=1, reference=False, executor="ray")
    solved = bench.run_bench(["inst"], Path("a.jsonl"), options=options, workers=2,
                             executor=bench.RayExecutor(2))
    assert not ray.is_initialized()  # the local instance it started is shut down
    assert [r["status"] for r in solved] == ["OPTIMAL", "OPTIMAL"], [r["error"] for r in solved]

    # A Ray the caller started is used as it is, and left running. Started here without a
    # working_dir, its workers import the shadowing folders: every task fails, and each failure
    # is one clean line (not Ray's coloured report with the remote traceback).
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        failed = bench.run_bench(["inst"], Path("b.jsonl"), options=options, workers=2,
                                 executor=bench.RayExecutor(2))
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert len(failed) == 2
    for rec in failed:
        assert rec["status"] == "ERROR"
        assert_clean_line(rec["error"])
        assert rec["error"].startswith("internal error: Ray task failed: ")
        assert SHADOW_MESSAGE in rec["error"]
    assert sorted(lines_of(root / "b.jsonl"), key=lambda r: r["path"]) == failed
