"""gRPC overhead and sustained throughput of ``moeplan serve`` (loopback only, bounded).

1. Latency: the same unary ``Solve`` ``--calls`` times in-process (``solver.planner.solve``) and
   through gRPC against a ``moeplan serve`` subprocess, one call at a time: median, p99 and the
   overhead (gRPC median - in-process median).
2. Throughput: ``--clients`` concurrent clients call ``Solve`` in a loop for ``--duration``
   seconds: solves per second, latency percentiles and the calls by status code.

    .venv/bin/python benchmarks/grpc_bench.py [--instance instances/seeds/004-...yaml]
        [--calls 50] [--clients 16] [--duration 30] [--workers 2] [--queue 16] [--json FILE]

Prints a Markdown report. Everything is bounded: at most ``--calls`` calls per latency series and
``--duration`` seconds of load; the server binds 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
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
from solver import planner  # noqa: E402
from solver.instance import load_instance  # noqa: E402

DEFAULT_INSTANCE = REPO / "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(values) * 1e3, "p99_ms": percentile(values, 99) * 1e3,
            "min_ms": min(values) * 1e3, "max_ms": max(values) * 1e3, "n": len(values)}


def start_server(workers: int, queue: int) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k != "MOEPLAN_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moeplan", "serve", "--host", "127.0.0.1", "--port", "0",
         "--workers", str(workers), "--queue", str(queue), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split()[-1]


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def latencies(instance: Any, address: str, request: pb.SolveRequest, calls: int,
              ) -> dict[str, list[float]]:
    """``calls`` solves in-process and ``calls`` through gRPC, interleaved so that both series
    see the same machine; also the solve time the server's worker measured for each call."""
    out: dict[str, list[float]] = {"in_process": [], "grpc": [], "grpc_worker_solve": []}
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlannerStub(channel)
        planner.solve(instance)  # warm-up: imports, caches, the connection, the worker
        stub.Solve(request, timeout=60)
        for _ in range(calls):
            t = time.perf_counter()
            local = planner.solve(instance)
            out["in_process"].append(time.perf_counter() - t)
            t = time.perf_counter()
            remote = stub.Solve(request, timeout=60).result
            out["grpc"].append(time.perf_counter() - t)
            out["grpc_worker_solve"].append(remote.solve_time_s)
            assert remote.objective == local.objective
    return out


async def sustained(address: str, request: pb.SolveRequest, clients: int, duration_s: float,
                    ) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    end = time.perf_counter() + duration_s

    async def client(stub: pb_grpc.PlannerStub) -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                await stub.Solve(request, timeout=60)
                codes["OK"] += 1
                latencies.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] += 1
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(0.05)  # a polite client backs off

    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(client(pb_grpc.PlannerStub(c)) for c in channels))
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    return {"clients": clients, "duration_s": elapsed, "ok": codes["OK"],
            "solves_per_s": codes["OK"] / elapsed, "codes": dict(codes),
            "latency": summary_ms(latencies) if latencies else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", type=Path, default=DEFAULT_INSTANCE)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="server solver processes")
    parser.add_argument("--queue", type=int, default=16, help="server queue limit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (1 <= args.calls <= 1000 and 1 <= args.clients <= 256
            and 0 < args.duration <= 600):
        raise SystemExit("bounds: --calls 1..1000, --clients 1..256, --duration (0, 600]")

    instance = load_instance(args.instance)
    request = pb.SolveRequest(instance=convert.instance_to_proto(instance))
    report: dict[str, Any] = {
        "instance": str(args.instance.relative_to(REPO)) if args.instance.is_absolute()
        else str(args.instance),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "server": {"workers": args.workers, "queue": args.queue},
        "request_bytes": request.ByteSize(),
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    proc, address = start_server(args.workers, args.queue)
    try:
        series = latencies(instance, address, request, args.calls)
        for name, values in series.items():
            report[name] = summary_ms(values)
        report["overhead_median_ms"] = (report["grpc"]["median_ms"]
                                        - report["in_process"]["median_ms"])
        # Per call: client latency - the worker's own solve time = everything but the solve.
        report["edge_median_ms"] = statistics.median(
            (a - b) * 1e3 for a, b in zip(series["grpc"], series["grpc_worker_solve"], strict=True))
        report["sustained"] = asyncio.run(
            sustained(address, request, args.clients, args.duration))
    finally:
        stop_server(proc)
    report["load_average_after"] = round(os.getloadavg()[0], 2)

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    ip, g, w, s = r["in_process"], r["grpc"], r["grpc_worker_solve"], r["sustained"]
    lines = [
        f"Instance `{r['instance']}` (request {r['request_bytes']} bytes), {r['cpus']} CPUs, "
        f"Python {r['python']}; server: {r['server']['workers']} solver workers, queue "
        f"{r['server']['queue']}. 1-minute load average {r['load_average_before']} before, "
        f"{r['load_average_after']} after.",
        "",
        "| unary Solve, one at a time | calls | median | p99 | min | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, x in (("in-process `planner.solve`", ip), ("gRPC `Solve` (loopback)", g),
                    ("  of which: solve time in the server's worker", w)):
        lines.append(f"| {name} | {x['n']} | {x['median_ms']:.1f} ms | {x['p99_ms']:.1f} ms | "
                     f"{x['min_ms']:.1f} ms | {x['max_ms']:.1f} ms |")
    lines += [
        "",
        f"gRPC overhead: {r['overhead_median_ms']:.1f} ms (median gRPC - median in-process); "
        f"per call, latency minus the worker's own solve time: median "
        f"{r['edge_median_ms']:.1f} ms (conversion, validation, queue, pipes, HTTP/2).",
        "",
        f"Sustained: {s['clients']} concurrent clients for {s['duration_s']:.1f} s: "
        f"**{s['solves_per_s']:.1f} solves/s** ({s['ok']} OK).",
    ]
    if s["latency"]:
        x = s["latency"]
        lines.append(f"Latency under load: median {x['median_ms']:.0f} ms, p99 "
                     f"{x['p99_ms']:.0f} ms, max {x['max_ms']:.0f} ms.")
    lines.append("Calls by status code: " + ", ".join(
        f"{code} {n}" for code, n in sorted(s["codes"].items())) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
