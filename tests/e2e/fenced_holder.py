"""A lock holder for the fencing test: takes the lock, prints its fencing token, waits for
a line on stdin (the test pauses it meanwhile), then writes as a holder that still
believes it holds the lock would: once guarded by the lock, once not.

    python -m tests.e2e.fenced_holder ENDPOINTS NAME TTL
"""

from __future__ import annotations

import sys

from pyraftkv import Client, Op


def main() -> None:
    endpoints, name, ttl = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
    with Client(endpoints, timeout=5.0) as client:
        lock = client.lock(name, ttl=ttl)
        lock.acquire()
        print("token", lock.fencing_token, flush=True)
        sys.stdin.readline()
        guarded = client.txn(compare=[lock.guard()], success=[Op.put("resource", "stale")])
        print("guarded", guarded.succeeded, flush=True)
        client.put("unfenced", "stale")
        print("unfenced done", flush=True)


if __name__ == "__main__":
    main()
