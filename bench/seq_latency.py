"""One writer, one put at a time: pyraftkv against real etcd 3.4, in one run.

Starts a fresh 3-member pyraftkv cluster and a fresh 3-member etcd cluster (``--etcd``,
default /usr/bin/etcd) on loopback, both with a 100 ms heartbeat and a 1 s election
timeout, and sends sequential puts (16-byte keys, 128-byte values) to each leader from a
blocking Python client: pyraftkv's ``Client`` (native protocol) and a grpcio stub for etcd
(etcd's gRPC API); with ``--via-follower`` to a follower of each, which forwards the write
to its leader. Within each round the systems take turns every ``--turn`` puts (100), so both
see the same machine: this one's disk and CPUs change speed from one minute to the next,
and whole rounds in turn gave ratios that drifted with it. Prints
p50/p99 per round and over all rounds, and pyraftkv's stage breakdown (the member's
per-write stage trace over the run, as ``pyraftkvctl check perf`` prints it), and per put
for each process (the client, each member's processes) the CPU it spent and the time it
was runnable but waiting for a CPU: one writer's latency is the CPU on its critical path,
the waits of each process woken along it, and the fdatasyncs.

    python bench/seq_latency.py --count 2000 --rounds 3 [--plot PREFIX] [--via-follower] \\
        [--single-process] [--no-etcd]

``--single-process`` adds a third cluster, of members started with that flag (one process
each), to the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import grpc  # noqa: E402

from bench.cluster_cpu import cpu_seconds, member_pids  # noqa: E402
from pyraftkv.client.aio import AsyncClient  # noqa: E402
from pyraftkv.ctl.check import stage_histograms, stage_lines  # noqa: E402
from pyraftkv.proto import rpc_pb2 as rpc  # noqa: E402
from tests.e2e.harness import LocalCluster, free_ports  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Etcd:
    """Three etcd members on free loopback ports."""

    def __init__(self, binary: str, root: str) -> None:
        ports = free_ports(6)
        self.clients, peers = ports[0::2], ports[1::2]
        cluster = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        self.processes = []
        for i, (client, peer) in enumerate(zip(self.clients, peers, strict=True)):
            argv = [
                binary,
                *("--name", f"e{i}", "--data-dir", os.path.join(root, f"etcd-{i}")),
                *("--listen-client-urls", f"http://127.0.0.1:{client}"),
                *("--advertise-client-urls", f"http://127.0.0.1:{client}"),
                *("--listen-peer-urls", f"http://127.0.0.1:{peer}"),
                *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"),
                *(
                    "--initial-cluster",
                    cluster,
                    "--initial-cluster-token",
                    f"seq-{self.clients[0]}",
                ),
                *("--heartbeat-interval", "100", "--election-timeout", "1000"),
            ]
            log = open(os.path.join(root, f"etcd-{i}.log"), "wb")  # noqa: SIM115
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=log))

    def leader_channel(self, follower: bool = False) -> grpc.Channel:
        """A channel to the leader, once there is one (to a follower with ``follower``)."""
        deadline = time.monotonic() + 30
        while True:
            for port in self.clients:
                channel = grpc.insecure_channel(f"127.0.0.1:{port}")
                status = channel.unary_unary(
                    "/etcdserverpb.Maintenance/Status",
                    request_serializer=rpc.StatusRequest.SerializeToString,
                    response_deserializer=rpc.StatusResponse.FromString,
                )
                try:
                    answer = status(rpc.StatusRequest(), timeout=1)
                    leads = answer.leader == answer.header.member_id
                    if answer.leader and leads != follower:
                        return channel
                except grpc.RpcError:
                    pass
                channel.close()
            if time.monotonic() > deadline:
                raise TimeoutError("etcd elected no leader")
            time.sleep(0.2)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


def etcd_round(channel: grpc.Channel, count: int, value: bytes, base: int) -> list[float]:
    put = channel.unary_unary(
        "/etcdserverpb.KV/Put",
        request_serializer=rpc.PutRequest.SerializeToString,
        response_deserializer=rpc.PutResponse.FromString,
    )
    latencies = []
    for i in range(count):
        request = rpc.PutRequest(key=b"seq/%012d" % (base + i), value=value)
        start = time.perf_counter()
        put(request, timeout=10)
        latencies.append(time.perf_counter() - start)
    return latencies


def pyraftkv_round(client, count: int, value: bytes, base: int) -> list[float]:
    latencies = []
    for i in range(count):
        key = b"seq/%012d" % (base + i)
        start = time.perf_counter()
        client.put(key, value)
        latencies.append(time.perf_counter() - start)
    return latencies


def schedstat(pid: int) -> tuple[int, int, int]:
    """(ns on a CPU, ns runnable but waiting for one, times scheduled in) of a live process,
    its threads summed (/proc/PID/task/*/schedstat)."""
    total = [0, 0, 0]
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with contextlib.suppress(OSError), open(path) as f:  # OSError: the thread ended
            for i, field in enumerate(f.read().split()):
                total[i] += int(field)
    return total[0], total[1], total[2]


class CpuMeter:
    """CPU seconds, and time spent runnable but waiting for a CPU, per named process (and
    this one: the client), summed over measured rounds. The wait shows what each hop
    between processes costs beyond the CPU it uses: on a virtual machine a woken process
    whose virtual CPU was halted waits for the host to run that CPU again."""

    CLIENT = "client (this process)"

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, self.CLIENT: os.getpid()}
        self.spent = dict.fromkeys(self.pids, 0.0)
        self.waits = {name: [0, 0] for name in self.pids}  # ns waiting, times scheduled in
        self.puts = 0

    def _now(self) -> dict[str, tuple[float, int, int]]:
        now = {}
        for name, pid in self.pids.items():
            cpu = time.process_time() if name == self.CLIENT else sum(cpu_seconds(pid))
            _, waited, slices = schedstat(pid)
            now[name] = (cpu, waited, slices)
        return now

    def measure(self, run, puts: int):
        before = self._now()
        result = run()
        after = self._now()
        for name in self.spent:
            self.spent[name] += after[name][0] - before[name][0]
            self.waits[name][0] += after[name][1] - before[name][1]
            self.waits[name][1] += after[name][2] - before[name][2]
        self.puts += puts
        return result

    def lines(self, title: str) -> list[str]:
        puts = max(1, self.puts)
        lines = [
            f"{title}: per put, per process: CPU, time runnable waiting for a CPU (us), "
            "times scheduled in, and the wait each time (us)"
        ]
        for name, seconds in self.spent.items():
            waited, slices = self.waits[name]
            lines.append(
                f"  {name:<24} {seconds / puts * 1e6:8.1f} {waited / puts / 1e3:8.1f}"
                f" {slices / puts:6.1f} {waited / max(1, slices) / 1e3:7.1f}"
            )
        return lines


def read_stages(endpoints: tuple[str, ...]):
    async def read():
        async with AsyncClient(endpoints) as client:
            return await stage_histograms(client, endpoints)

    return asyncio.run(read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="puts per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument(
        "--turn",
        type=int,
        default=100,
        help="puts each system sends before the next takes its turn, within a round "
        "(this machine's disk and CPUs change speed within seconds); 0: whole rounds",
    )
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    parser.add_argument("--plot", metavar="PREFIX", help="write PREFIX-cdf.png (both)")
    parser.add_argument("--no-etcd", action="store_true", help="pyraftkv only")
    parser.add_argument(
        "--via-follower",
        action="store_true",
        help="write through a follower (which forwards to the leader), in both clusters",
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="also a cluster of --single-process members, measured in the same rounds",
    )
    args = parser.parse_args()
    value = os.urandom(args.value_size // 2).hex().encode()[: args.value_size]
    root = tempfile.mkdtemp(prefix="pyraftkv-seq-")
    os.makedirs(os.path.join(root, "two"))
    clusters = {"pyraftkv": LocalCluster(os.path.join(root, "two"), 3)}
    if args.single_process:
        os.makedirs(os.path.join(root, "one"))
        clusters["pyraftkv 1p"] = LocalCluster(
            os.path.join(root, "one"), 3, extra_args=["--single-process"]
        )
    etcd = None if args.no_etcd else Etcd(args.etcd, root)
    results: dict[str, list[float]] = {name: [] for name in [*clusters, "etcd 3.4"]}
    meters: dict[str, CpuMeter] = {}
    stages_before: dict[str, tuple[tuple[str, ...], object]] = {}
    try:
        with contextlib.ExitStack() as stack:
            runs = []
            for name, cluster in clusters.items():
                stack.callback(cluster.stop_all)
                cluster.start()
                leader = cluster.wait_leader()
                target = leader
                if args.via_follower:
                    target = next(m for m in cluster.members if m is not leader)
                meters[name] = CpuMeter(member_pids(cluster.members, leader))
                client = stack.enter_context(cluster.client([target]))
                # Warm up (connections, first LMDB pages), then measure.
                pyraftkv_round(client, 200, value, 10**9)
                endpoints = tuple(m.endpoint for m in cluster.members)
                stages_before[name] = (endpoints, read_stages(endpoints))
                runs.append((name, lambda b, n, c=client: pyraftkv_round(c, n, value, b)))
            if etcd is not None:
                channel = etcd.leader_channel(args.via_follower)
                meters["etcd 3.4"] = CpuMeter(
                    {f"etcd e{i}": p.pid for i, p in enumerate(etcd.processes)}
                )
                etcd_round(channel, 200, value, 10**9)
                runs.append(("etcd 3.4", lambda b, n: etcd_round(channel, n, value, b)))
            turn = min(args.turn, args.count) if args.turn else args.count
            for r in range(args.rounds):
                # Each round starts one system later than the last, and within a round the
                # systems take turns every ``turn`` puts: all see the same machine.
                order = runs[r % len(runs) :] + runs[: r % len(runs)]
                latencies = {name: [] for name, _ in order}
                end = (r + 1) * args.count
                for base in range(r * args.count, end, turn):
                    n = min(turn, end - base)
                    for name, measure in order:
                        latencies[name] += meters[name].measure(
                            lambda m=measure, b=base, n=n: m(b, n), n
                        )
                for name, _ in order:
                    results[name] += latencies[name]
                    print(
                        f"round {r + 1} {name:<11} p50 "
                        f"{percentile(latencies[name], 0.5) * 1000:.3f} ms  p99 "
                        f"{percentile(latencies[name], 0.99) * 1000:.3f} ms",
                        flush=True,
                    )
            stages = {
                name: (before, read_stages(endpoints))
                for name, (endpoints, before) in stages_before.items()
            }
    finally:
        if etcd is not None:
            etcd.close()
        shutil.rmtree(root, ignore_errors=True)
    for name, latencies in results.items():
        if latencies:
            print(
                f"all rounds {name:<11} p50 {percentile(latencies, 0.5) * 1000:.3f} ms"
                f"  p99 {percentile(latencies, 0.99) * 1000:.3f} ms  ({len(latencies)} puts)"
            )
    for name, (before, after) in stages.items():
        print(f"\n{name}:")
        for line in stage_lines(before, after):
            print(line)
    for name, meter in meters.items():
        for line in meter.lines(name):
            print(line)
    if args.plot:
        from plots import latency_cdf

        latency_cdf(
            f"{args.plot}-cdf.png",
            {f"{k}, sequential puts": sorted(v) for k, v in results.items() if v},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
