"""``pyraftkv cluster --size N``: N members on loopback, each with its own data dir.

Member i (1-based) serves clients on 127.0.0.1:(i*10000 + 2379 - 10000) and peers on the
port after it, so a three-member cluster uses 2379/2380, 12379/12380 and 22379/22380.
Ctrl-C or SIGTERM stops every member gracefully.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from .python_command import module_command


def member_ports(index: int) -> tuple[int, int]:
    """(client port, peer port) of member ``index`` (0-based)."""
    client = 2379 + 10000 * index
    return client, client + 1


def member_argv(index: int, size: int, prefix: str, token: str = "pyraftkv-local") -> list[str]:
    """The command line that starts member ``index`` of a local cluster of ``size``."""
    cluster = ",".join(f"m{i + 1}=http://127.0.0.1:{member_ports(i)[1]}" for i in range(size))
    client, peer = member_ports(index)
    return module_command(
        "pyraftkv",
        "--name",
        f"m{index + 1}",
        "--data-dir",
        f"{prefix}-{index + 1}.pyraftkv",
        "--listen-client-urls",
        f"http://127.0.0.1:{client}",
        "--advertise-client-urls",
        f"http://127.0.0.1:{client}",
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        cluster,
        "--initial-cluster-token",
        token,
    )


def run_local_cluster(size: int, prefix: str, dashboard: str | None = None) -> int:
    if not 1 <= size <= 6:
        print("pyraftkv cluster: --size must be between 1 and 6", file=sys.stderr)
        return 2
    endpoints = ",".join(f"127.0.0.1:{member_ports(i)[0]}" for i in range(size))
    if dashboard:
        from ..dashboard.server import start_dashboard

        try:
            start_dashboard(endpoints.split(","), dashboard)
        except (OSError, ValueError) as exc:
            print(f"pyraftkv cluster: --dashboard {dashboard}: {exc}", file=sys.stderr)
            return 2
    # Each member leads a session of its own (its own scheduling autogroup: see
    # follower_yield.py); this process stops them on Ctrl-C or SIGTERM.
    processes = [
        subprocess.Popen(member_argv(i, size, prefix), start_new_session=True) for i in range(size)
    ]
    print(f"pyraftkv: {size} members started; endpoints: {endpoints}", flush=True)
    if dashboard:
        print(f"pyraftkv: dashboard on http://{dashboard}/", flush=True)
    print(f"pyraftkv: try  pyraftkvctl --endpoints={endpoints} put foo bar", flush=True)

    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    code = 0
    while not stop:
        for process in processes:
            if process.poll() is not None:
                print(
                    f"pyraftkv cluster: a member exited with status {process.returncode}; "
                    "stopping the others",
                    file=sys.stderr,
                )
                stop.append(True)
                code = 1
                break
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    return code
