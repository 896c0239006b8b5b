"""Ring throughput between two real processes: small messages in batches, messages/s."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap

import pytest

from pyraftkv.ring import ShmRing

# Reads a message count per line on stdin and pushes that many messages in batches.
PRODUCER = textwrap.dedent(
    """
    import select, sys
    from pyraftkv.ring import ShmRing

    fds, size, batch_size = eval(sys.argv[1])
    ring = ShmRing.attach(fds, "producer")
    batch = [b"m" * size] * batch_size
    for line in sys.stdin:
        left = int(line)
        while left:
            pending = batch[: min(left, batch_size)]
            while pending:
                pushed = ring.push_batch(pending)
                left -= pushed
                pending = pending[pushed:]
                if pending:
                    select.select([ring.writable_fd()], [], [])
    ring.close()
    """
)

MESSAGES_PER_ROUND = 200_000


@pytest.mark.parametrize(
    ("size", "batch_size"),
    [(32, 64), (32, 256), (256, 256)],
    ids=["32B-x64", "32B-x256", "256B-x256"],
)
def test_ring_messages_per_second(benchmark, size: int, batch_size: int) -> None:
    ring = ShmRing.create(1 << 20, role="consumer")
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, repr((ring.fds, size, batch_size))],
        pass_fds=ring.fds,
        stdin=subprocess.PIPE,
        text=True,
    )

    def one_round() -> int:
        producer.stdin.write(f"{MESSAGES_PER_ROUND}\n")
        producer.stdin.flush()
        received = 0
        while received < MESSAGES_PER_ROUND:
            batch = ring.pop_batch(4096)
            if batch:
                received += len(batch)
            else:
                select.select([ring.readable_fd()], [], [], 5)
        return received

    try:
        received = benchmark.pedantic(one_round, rounds=10, warmup_rounds=1)
    finally:
        producer.stdin.close()
        producer.wait(timeout=30)
        ring.close()
    assert received == MESSAGES_PER_ROUND
    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["messages/s (median)"] = round(MESSAGES_PER_ROUND / median)
