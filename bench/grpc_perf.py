"""etcd's gRPC API under load: 3-member pyraftkv against 3-member etcd 3.4, in one run.

Starts a fresh 3-member pyraftkv cluster and a fresh 3-member etcd cluster (``--etcd``,
default /usr/bin/etcd) on loopback, both with a 100 ms heartbeat and a 1 s election
timeout, then, alternating between the two so both see the same machine:

- ``etcdctl check perf --load=L`` for each load in ``--loads`` (default m and xl) with
  the three client URLs as endpoints (etcdctl spreads its clients over them);
- aetcd 1.0 (an unmodified asyncio gRPC client) with ``--inflight`` puts in flight for
  ``--aetcd-seconds`` against the leader, in a process of its own (aetcd's generated
  protobufs clash with pyraftkv's in one process).

Prints each measurement as it ends and a side-by-side table with the ratio
pyraftkv / etcd. The shared machine is noisy: compare the ratios, not the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

CHECK_LINES = {
    # the PASS and the FAIL wording of each line ("Throughput too low: 766 writes/s")
    "writes/s": re.compile(rb"Throughput (?:is|too low:) (\d+) writes/s"),
    "slowest s": re.compile(rb"Slowest request took (?:too long: )?([\d.]+)s"),
    "stddev s": re.compile(rb"Stddev (?:is|too high:) ([\d.]+)s"),
}


def check_perf(etcdctl: str, endpoints: list[str], load: str) -> dict:
    """One ``etcdctl check perf`` run: throughput, slowest, stddev and the verdict."""
    env = dict(os.environ, ETCDCTL_API="3")
    argv = [etcdctl, "--endpoints", ",".join(endpoints), "check", "perf", f"--load={load}"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=400)
    out = done.stdout + done.stderr
    result: dict = {"verdict": "PASS" if done.returncode == 0 else "FAIL"}
    for name, pattern in CHECK_LINES.items():
        match = pattern.search(out)
        result[name] = float(match.group(1)) if match else None
    if result["writes/s"] is None:
        result["error"] = out.decode(errors="replace")[-400:]
    return result


def aetcd_load(endpoint: str, seconds: float, inflight: int) -> dict:
    """aetcd with ``inflight`` puts outstanding, in a child process (see the docstring)."""
    argv = [sys.executable, __file__, "--aetcd-worker", endpoint, str(seconds), str(inflight)]
    done = subprocess.run(argv, capture_output=True, timeout=seconds + 120)
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-400:]}
    return json.loads(done.stdout.splitlines()[-1])


def aetcd_worker(endpoint: str, seconds: float, inflight: int) -> None:
    """Runs in the child: puts of 128-byte values, ``inflight`` at a time."""
    import aetcd

    from pyraftkv.node.event_loop import run

    host, port = endpoint.rsplit(":", 1)
    value = os.urandom(64).hex().encode()

    async def main() -> None:
        latencies: list[float] = []
        async with aetcd.Client(host, int(port), timeout=30) as client:
            for i in range(200):  # warm up the channel
                await client.put(b"aetcd-perf/warm%d" % i, value)
            stop = time.monotonic() + seconds

            async def writer(n: int) -> None:
                i = 0
                while time.monotonic() < stop:
                    start = time.perf_counter()
                    await client.put(b"aetcd-perf/%04d/%08d" % (n, i), value)
                    latencies.append(time.perf_counter() - start)
                    i += 1

            began = time.monotonic()
            await asyncio.gather(*(writer(n) for n in range(inflight)))
            elapsed = time.monotonic() - began
        latencies.sort()
        print(
            json.dumps(
                {
                    "writes/s": round(len(latencies) / elapsed),
                    "p50 ms": round(latencies[len(latencies) // 2] * 1000, 1),
                    "p99 ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                }
            )
        )

    run(main())


def etcd_leader_endpoint(etcd) -> str:
    """The client endpoint of etcd's leader (once it has one)."""
    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    etcd.leader_channel().close()  # waits for a leader
    for port in etcd.clients:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = channel.unary_unary(
                "/etcdserverpb.Maintenance/Status",
                request_serializer=rpc.StatusRequest.SerializeToString,
                response_deserializer=rpc.StatusResponse.FromString,
            )(rpc.StatusRequest(), timeout=5)
        if status.leader == status.header.member_id:
            return f"127.0.0.1:{port}"
    raise RuntimeError("etcd has no leader")


def row_text(result: dict | None, keys: tuple[str, ...]) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return "error"
    return " ".join(
        f"{result[k]:g}" if isinstance(result[k], float) else str(result[k]) for k in keys
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="m,xl", help="etcdctl check perf loads, in order")
    parser.add_argument("--rounds", type=int, default=1, help="times the whole series runs")
    parser.add_argument("--inflight", type=int, default=256, help="aetcd puts in flight")
    parser.add_argument("--aetcd-seconds", type=float, default=20, help="0 skips aetcd")
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    parser.add_argument("--etcdctl", default="/usr/bin/etcdctl")
    parser.add_argument("--no-etcd", action="store_true", help="pyraftkv only")
    parser.add_argument("--aetcd-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aetcd_worker:
        endpoint, seconds, inflight = args.aetcd_worker
        aetcd_worker(endpoint, float(seconds), int(inflight))
        return 0

    from seq_latency import Etcd

    from tests.e2e.harness import LocalCluster

    root = tempfile.mkdtemp(prefix="pyraftkv-grpc-perf-")
    cluster = LocalCluster(root, 3)
    etcd = None if args.no_etcd else Etcd(args.etcd, root)
    results: list[tuple[str, str, dict]] = []  # (measurement, system, result)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        systems = [("pyraftkv", cluster.endpoints, leader.endpoint)]
        if etcd is not None:
            etcd_leader = etcd_leader_endpoint(etcd)
            etcd_endpoints = [f"127.0.0.1:{p}" for p in etcd.clients]
            systems.append(("etcd 3.4", etcd_endpoints, etcd_leader))
        runs = [f"check perf --load={load}" for load in args.loads.split(",") if load]
        if args.aetcd_seconds > 0:
            runs.append(f"aetcd {args.inflight} in flight")
        step = 0
        for _ in range(args.rounds):
            for what in runs:
                order = systems if step % 2 == 0 else systems[::-1]
                step += 1
                for name, endpoints, leader_endpoint in order:
                    if what.startswith("check perf"):
                        result = check_perf(args.etcdctl, endpoints, what.split("=")[1])
                    else:
                        result = aetcd_load(leader_endpoint, args.aetcd_seconds, args.inflight)
                    results.append((what, name, result))
                    print(f"{what:<26} {name:<9} {json.dumps(result)}", flush=True)
    finally:
        cluster.stop_all()
        if etcd is not None:
            etcd.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("| measurement | pyraftkv | etcd 3.4 | ratio of writes/s |")
    print("|---|---|---|---|")
    for i, (what, name, result) in enumerate(results):
        if name != "pyraftkv":
            continue
        other = next(
            (r for w, n, r in results[max(i - 1, 0) : i + 2] if w == what and n != name), None
        )
        keys = (
            ("writes/s", "p50 ms", "p99 ms")
            if what.startswith("aetcd")
            else ("writes/s", "slowest s", "stddev s", "verdict")
        )
        ratio = "-"
        if other and result.get("writes/s") and other.get("writes/s"):
            ratio = f"{result['writes/s'] / other['writes/s']:.2f}"
        print(f"| {what} | {row_text(result, keys)} | {row_text(other, keys)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
