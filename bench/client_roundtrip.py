"""Round trip of the blocking Client: serial serializable gets against one member, in µs.

A serial get is one blocking round trip on the calling thread (the client's direct path),
so this shows what the client itself costs per call (the member answers from memory).

    pyraftkv &
    python bench/client_roundtrip.py --endpoint 127.0.0.1:2379 --count 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyraftkv import Client  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default="127.0.0.1:2379")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with Client([args.endpoint]) as client:
        client.put("bench/roundtrip", "v")
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.count):
                client.get("bench/roundtrip", serializable=True)
            rounds.append((time.perf_counter() - started) / args.count * 1e6)
    print(
        f"serial serializable get: median {statistics.median(rounds):.0f} µs "
        f"(rounds: {', '.join(f'{r:.0f}' for r in rounds)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
