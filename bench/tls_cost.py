"""What TLS costs: writes/s and p50/p99 of the same 3-member cluster with plaintext, then
with client and peer TLS (client-certificate auth on both), runs alternating.

    python bench/tls_cost.py [--runs 3] [--duration 8] [--clients 256] [--conns 6]

Each run starts a fresh cluster (the tests' harness: free loopback ports, data under a
temporary dir), runs bench/load.py against all three members, and stops it. Certificates
are made with trustme (pip install trustme).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from pyraftkv.client.tls import TLS  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402


def make_certs(directory: str) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    files = {"ca": os.path.join(directory, "ca.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    for name in ("member", "root"):
        issued = ca.issue_cert("127.0.0.1", common_name=name)
        files[name] = os.path.join(directory, f"{name}.pem")
        files[f"{name}-key"] = os.path.join(directory, f"{name}-key.pem")
        issued.cert_chain_pems[0].write_to_path(files[name])
        issued.private_key_pem.write_to_path(files[f"{name}-key"])
    return files


def start_cluster(directory: str, certs: dict[str, str] | None) -> LocalCluster:
    scheme = "https" if certs else "http"
    tls_args = (
        [
            *("--cert-file", certs["member"], "--key-file", certs["member-key"]),
            *("--trusted-ca-file", certs["ca"], "--client-cert-auth"),
            *("--peer-cert-file", certs["member"], "--peer-key-file", certs["member-key"]),
            *("--peer-trusted-ca-file", certs["ca"], "--peer-client-cert-auth"),
        ]
        if certs
        else []
    )
    cluster = LocalCluster(
        directory,
        3,
        snapshot_count=100_000,
        extra_args=["--log-level", "warning", *tls_args],
        peer_scheme=scheme,
        client_scheme=scheme,
        client_options={"tls": TLS(certs["ca"], certs["root"], certs["root-key"])} if certs else {},
    )
    cluster.start()
    return cluster


def run(args: argparse.Namespace, certs: dict[str, str] | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="pyraftkv-tls-bench-") as directory:
        cluster = start_cluster(directory, certs)
        endpoints = cluster.endpoints
        try:
            command = [
                *(sys.executable, os.path.join(HERE, "load.py"), "--json"),
                *("--endpoints", ",".join(endpoints), "--duration", str(args.duration)),
                *("--clients", str(args.clients), "--conns", str(args.conns)),
            ]
            if certs:
                command += ["--cacert", certs["ca"], "--cert", certs["root"]]
                command += ["--key", certs["root-key"]]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])
        finally:
            cluster.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--conns", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyraftkv-certs-") as directory:
        certs = make_certs(directory)
        results: dict[str, list[dict]] = {"plaintext": [], "TLS": []}
        for _ in range(args.runs):
            results["plaintext"].append(run(args, None))
            results["TLS"].append(run(args, certs))
    for name, runs in results.items():
        rates = " / ".join(f"{r['throughput_per_s']:,.0f}" for r in runs)
        p50 = sorted(r["latency_ms"]["p50"] for r in runs)[len(runs) // 2]
        p99 = sorted(r["latency_ms"]["p99"] for r in runs)[len(runs) // 2]
        print(f"{name:9}  writes/s {rates}  p50 {p50:.1f} ms  p99 {p99:.1f} ms (medians)")
    plain = sorted(r["throughput_per_s"] for r in results["plaintext"])[args.runs // 2]
    tls = sorted(r["throughput_per_s"] for r in results["TLS"])[args.runs // 2]
    print(f"TLS costs {100 * (1 - tls / plain):.1f}% of the median throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
