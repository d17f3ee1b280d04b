"""Load test of ``moeplan serve``: N concurrent clients for T seconds, on loopback, bounded.

Starts ``moeplan serve`` as a subprocess on 127.0.0.1 (port 0), runs ``--clients`` asyncio
clients that call ``Solve`` in a loop for ``--seconds`` seconds (each on its own channel; a
client that gets RESOURCE_EXHAUSTED backs off 50 ms, as a polite client does), then stops the
server with SIGTERM. Reports latency percentiles, calls by status code, and the resident memory
(``VmRSS`` from ``/proc``) of the server process and of the server plus its worker processes:
before the load, after the warm-up, and at the end.

    .venv/bin/python benchmarks/load.py --clients 16 --seconds 60 --workers 2 --queue 2 --check

``--check`` exits 1 unless every call ended OK or RESOURCE_EXHAUSTED and the total RSS grew by
less than 10% between the end of the warm-up and the end of the run (the acceptance of issue 6,
at 4x overload: 16 clients for 2 workers + 2 queue places). Bounds: 1-256 clients, at most 600 s,
a per-call deadline, and the server is killed if it does not stop within 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from service import convert  # noqa: E402
from service._gen.moeplan.v1 import planner_pb2 as pb  # noqa: E402
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc  # noqa: E402
from solver.instance import load_instance  # noqa: E402

DEFAULT_INSTANCE = REPO / "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml"
ALLOWED = {"OK", "RESOURCE_EXHAUSTED"}
MAX_RSS_GROWTH = 0.10


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ----------------------------------------------------------------------------------------------
# Memory of the server and its workers (Linux /proc)
# ----------------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """``VmRSS`` of one process in KiB (0 if it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its solver workers, multiprocessing's resource tracker)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                out.append(child)
                todo.append(child)
    return out


def memory(pid: int) -> dict[str, Any]:
    """RSS of the server process and of the server plus every descendant, in MiB."""
    children = descendants(pid)
    server = rss_kib(pid)
    total = server + sum(rss_kib(c) for c in children)
    return {"server_mib": round(server / 1024, 1), "total_mib": round(total / 1024, 1),
            "processes": 1 + len(children)}


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


def start_server(workers: int, queue: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k != "MOEPLAN_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moeplan", "serve", "--host", "127.0.0.1", "--port", "0",
             "--workers", str(workers), "--queue", str(queue), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait()
        raise SystemExit(f"the server did not start: {line!r}\n{log_path.read_text()}")
    return proc, line.split()[-1]


def stop_server(proc: subprocess.Popen) -> int | None:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# ----------------------------------------------------------------------------------------------
# The load
# ----------------------------------------------------------------------------------------------


async def load(address: str, request: pb.SolveRequest, clients: int, seconds: float,
               warmup_s: float, call_timeout_s: float, pid: int) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    ok_latencies: list[float] = []
    all_latencies: list[float] = []
    start = time.perf_counter()
    end = start + seconds
    samples: list[tuple[float, dict[str, Any]]] = []

    async def client(stub: pb_grpc.PlannerStub) -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                await stub.Solve(request, timeout=call_timeout_s)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
            elapsed = time.perf_counter() - t
            codes[code] += 1
            all_latencies.append(elapsed)
            if code == "OK":
                ok_latencies.append(elapsed)
            elif code == "RESOURCE_EXHAUSTED":
                await asyncio.sleep(0.05)  # a polite client backs off
            else:
                await asyncio.sleep(0.2)

    async def sampler() -> None:
        while time.perf_counter() < end:
            await asyncio.sleep(1.0)
            samples.append((time.perf_counter() - start, await asyncio.to_thread(memory, pid)))

    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    try:
        tasks = [asyncio.ensure_future(client(pb_grpc.PlannerStub(c))) for c in channels]
        sampling = asyncio.ensure_future(sampler())
        await asyncio.sleep(min(warmup_s, seconds))
        after_warmup = await asyncio.to_thread(memory, pid)
        await asyncio.gather(*tasks)
        at_end = await asyncio.to_thread(memory, pid)
        await sampling
    finally:
        for channel in channels:
            await channel.close()
    elapsed = time.perf_counter() - start
    peak = max((s for _, s in samples), key=lambda m: m["total_mib"], default=at_end)

    def pct(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"p50_ms": round(percentile(values, 50) * 1e3, 1),
                "p99_ms": round(percentile(values, 99) * 1e3, 1),
                "max_ms": round(max(values) * 1e3, 1), "n": len(values)}

    return {"seconds": round(elapsed, 1), "calls": sum(codes.values()), "codes": dict(codes),
            "ok_per_s": round(codes["OK"] / elapsed, 2), "latency_ok": pct(ok_latencies),
            "latency_all": pct(all_latencies), "rss_after_warmup": after_warmup,
            "rss_end": at_end, "rss_peak": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="server solver processes")
    parser.add_argument("--queue", type=int, default=2, help="server queue limit")
    parser.add_argument("--instance", type=Path, default=DEFAULT_INSTANCE)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the 'after warm-up' RSS (default: "
                             "min(10, seconds / 4))")
    parser.add_argument("--call-timeout", type=float, default=60.0, help="per-call deadline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless only OK/RESOURCE_EXHAUSTED and RSS growth < 10%%")
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 600 and 1 <= args.workers <= 64
            and 0 <= args.queue <= 1024 and 0 < args.call_timeout <= 600):
        parser.error("bounds: --clients 1..256, --seconds (0, 600], --workers 1..64, "
                     "--queue 0..1024, --call-timeout (0, 600]")
    warmup = args.warmup if args.warmup is not None else min(10.0, args.seconds / 4)

    instance = load_instance(args.instance)
    request = pb.SolveRequest(instance=convert.instance_to_proto(instance))
    with tempfile.TemporaryDirectory(prefix="moeplan-load-") as tmp:
        log_path = Path(tmp) / "server.log"
        proc, address = start_server(args.workers, args.queue, log_path)
        try:
            time.sleep(0.5)  # let the workers settle after the "listening" line
            before = memory(proc.pid)
            figures = asyncio.run(load(address, request, args.clients, args.seconds, warmup,
                                       args.call_timeout, proc.pid))
        finally:
            exit_code = stop_server(proc)
        server_log = log_path.read_text()
    instance_name = (str(args.instance.relative_to(REPO)) if args.instance.is_absolute()
                     and args.instance.is_relative_to(REPO) else str(args.instance))
    w, e = figures["rss_after_warmup"]["total_mib"], figures["rss_end"]["total_mib"]
    report: dict[str, Any] = {
        "instance": instance_name, "cpus": os.cpu_count(), "python": platform.python_version(),
        "clients": args.clients, "workers": args.workers, "queue": args.queue,
        "warmup_s": warmup, "rss_before": before, **figures,
        "rss_growth_after_warmup": round((e - w) / w, 4) if w else None,
        "server_exit_code": exit_code,
        "server_log_errors": sum(1 for line in server_log.splitlines()
                                 if "ERROR" in line or "Traceback" in line),
    }
    unexpected = set(report["codes"]) - ALLOWED
    growth = report["rss_growth_after_warmup"]
    report["acceptance"] = {"only_ok_and_resource_exhausted": not unexpected,
                            "rss_growth_below_10pct": growth is not None
                            and growth < MAX_RSS_GROWTH}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    if args.check and not all(report["acceptance"].values()):
        return 1
    return 0


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Instance `{r['instance']}`, {r['cpus']} CPUs, Python {r['python']}; server: "
        f"{r['workers']} solver workers, queue {r['queue']}; {r['clients']} clients for "
        f"{r['seconds']} s (warm-up {r['warmup_s']:g} s).",
        "",
        "| calls | " + " | ".join(sorted(r["codes"])) + " | OK/s |",
        "|---:|" + "---:|" * len(r["codes"]) + "---:|",
        f"| {r['calls']} | " + " | ".join(str(r["codes"][c]) for c in sorted(r["codes"]))
        + f" | {r['ok_per_s']} |",
        "",
        "| latency | calls | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, key in (("OK calls", "latency_ok"), ("all calls", "latency_all")):
        x = r[key]
        if x:
            lines.append(f"| {name} | {x['n']} | {x['p50_ms']} ms | {x['p99_ms']} ms | "
                         f"{x['max_ms']} ms |")
    lines += ["", "| RSS (MiB) | server | server + workers | processes |",
              "|---|---:|---:|---:|"]
    for name, key in (("before the load", "rss_before"), ("after warm-up", "rss_after_warmup"),
                      ("peak (1 s samples)", "rss_peak"), ("at the end", "rss_end")):
        m = r[key]
        lines.append(f"| {name} | {m['server_mib']} | {m['total_mib']} | {m['processes']} |")
    growth = r["rss_growth_after_warmup"]
    lines += [
        "",
        f"RSS growth after warm-up (server + workers): "
        f"{'n/a' if growth is None else f'{growth * 100:+.1f}%'}. Server exit code "
        f"{r['server_exit_code']}; error lines in its log: {r['server_log_errors']}.",
        "Acceptance: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                   for k, v in r["acceptance"].items()) + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
