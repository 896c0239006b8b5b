"""Shared-memory ring between real processes: content and order over many wraps, a full ring,
oversized messages, a killed producer, and eventfd wake-ups in a real asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from pyraftkv.crc32c import crc32c
from pyraftkv.errors import PyraftkvError
from pyraftkv.ring import RingClosedError, RingError, ShmRing

# The producer process: attaches to the ring from its fds, pushes `count` messages made by
# message(seed, i) in random batches, waiting on writable_fd whenever the ring is full.
PRODUCER = textwrap.dedent(
    """
    import random, select, sys, time
    from pyraftkv.ring import ShmRing

    def message(rng, i, largest):
        size = rng.choice((0, 1, 7, 8, 9, 32, 100, rng.randrange(largest + 1)))
        return i.to_bytes(4, "little") + rng.randbytes(size)

    fds, seed, count, largest, pause = eval(sys.argv[1])
    ring = ShmRing.attach(fds, "producer")
    rng = random.Random(seed)
    print("attached", flush=True)
    i = 0
    while i < count:
        batch = [message(rng, i + k, largest) for k in range(min(rng.randrange(1, 200), count - i))]
        i += len(batch)
        while batch:
            batch = batch[ring.push_batch(batch):]
            if batch:
                select.select([ring.writable_fd()], [], [], 5)
        if pause:
            time.sleep(pause)
    if len(sys.argv) > 2 and sys.argv[2] == "hang":
        time.sleep(60)
    ring.close()
    """
)


def expected_batches(seed: int, count: int, largest: int) -> list[list[bytes]]:
    """The batches PRODUCER pushes, made from the same seeded generator."""
    rng = random.Random(seed)
    batches = []
    i = 0
    while i < count:
        batch = []
        for k in range(min(rng.randrange(1, 200), count - i)):
            size = rng.choice((0, 1, 7, 8, 9, 32, 100, rng.randrange(largest + 1)))
            batch.append((i + k).to_bytes(4, "little") + rng.randbytes(size))
        i += len(batch)
        batches.append(batch)
    return batches


def expected_messages(seed: int, count: int, largest: int) -> list[bytes]:
    return [m for batch in expected_batches(seed, count, largest) for m in batch]


@contextlib.contextmanager
def ring_pair(capacity: int) -> Iterator[tuple[ShmRing, ShmRing]]:
    """Both ends in this process: for deterministic checks of the protocol itself."""
    with ShmRing.create(capacity, role="producer") as producer:
        consumer = ShmRing.attach(producer.fds, "consumer")
        try:
            yield producer, consumer
        finally:
            consumer.close()


def start_producer(ring: ShmRing, seed: int, count: int, largest: int, *extra: str, pause=0.0):
    args = repr((ring.fds, seed, count, largest, pause))
    process = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, args, *extra],
        pass_fds=ring.fds,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "attached"
    return process


def drain(ring: ShmRing, timeout: float = 30.0) -> list[bytes]:
    """Consume until the producer has closed and the ring is empty, sleeping on the eventfd."""
    received: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = ring.pop_batch(512)
        if batch:
            received.extend(batch)
            continue
        if not ring.peer_alive():
            return received + ring.pop_batch(1 << 20)
        select.select([ring.readable_fd()], [], [], 1.0)
    raise AssertionError("producer did not finish in time")


@pytest.mark.parametrize(
    ("capacity", "count", "largest"),
    [(4096, 20_000, 40), (1 << 16, 3_000, 30_000), (1 << 16, 100_000, 200)],
    ids=["tiny-ring-tiny-messages", "large-messages", "many-messages"],
)
def test_two_processes_preserve_order_and_content(capacity: int, count: int, largest: int) -> None:
    with ShmRing.create(capacity, role="consumer") as ring:
        producer = start_producer(ring, 11, count, largest)
        received = drain(ring)
        assert producer.wait(timeout=30) == 0
    expected = expected_messages(11, count, largest)
    assert len(received) == count
    assert crc32c(b"".join(received)) == crc32c(b"".join(expected))
    assert received == expected
    # the ring wrapped many times over
    assert sum(len(m) for m in received) > 10 * capacity


def test_full_ring_pushes_back_and_resumes() -> None:
    with ring_pair(4096) as (producer, consumer):
        messages = [bytes([i]) * 100 for i in range(60)]  # 104 bytes each in the ring
        pushed = producer.push_batch(messages)
        assert pushed == 4096 // 104
        assert not producer.push(bytes(100))  # 40 bytes are left, it needs 104
        assert _readable(producer.writable_fd()) is False  # nothing freed yet
        first = consumer.pop_batch(5)
        assert first == messages[:5]
        assert _readable(producer.writable_fd())  # the consumer woke the waiting producer
        rest = list(messages[pushed:])
        total = pushed
        while rest:
            n = producer.push_batch(rest)
            total += n
            rest = rest[n:]
            got = consumer.pop_batch(7)
            first += got
        first += consumer.pop_batch(100)
        assert first == messages  # nothing overwritten, nothing lost, in order
        assert total == len(messages)
        # the wake-up was read back: an event loop would not keep calling the producer
        assert not _readable(producer.writable_fd())


def test_oversized_message_is_refused_and_nothing_is_pushed() -> None:
    with ring_pair(4096) as (producer, consumer):
        assert producer.max_message_bytes == 4092
        with pytest.raises(ValueError, match="4093 bytes can never fit"):
            producer.push_batch([b"small", bytes(4093)])
        assert consumer.pop_batch() == []
        assert producer.push(bytes(4092))  # the largest message fits an empty ring
        assert consumer.pop_batch() == [bytes(4092)]


def test_killed_producer_is_detected() -> None:
    with ShmRing.create(1 << 16, role="consumer") as ring:
        producer = start_producer(ring, 5, 100, 50, "hang")
        received: list[bytes] = []
        while len(received) < 100:
            received += ring.pop_batch()
        assert ring.peer_alive()
        producer.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ring.peer_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not ring.peer_alive()  # seen while the child is still an unreaped zombie
        producer.wait()
        assert not ring.peer_alive()
        assert received == expected_messages(5, 100, 50)


def test_killed_consumer_is_detected_by_the_producer() -> None:
    script = (
        "import sys, time; from pyraftkv.ring import ShmRing; "
        "ring = ShmRing.attach(eval(sys.argv[1]), 'consumer'); print('attached', flush=True); "
        "time.sleep(60)"
    )
    with ShmRing.create(4096, role="producer") as ring:
        consumer = subprocess.Popen(
            [sys.executable, "-c", script, repr(ring.fds)],
            pass_fds=ring.fds,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert consumer.stdout.readline().strip() == "attached"
        assert ring.peer_alive()
        consumer.kill()
        consumer.wait()
        assert not ring.peer_alive()


def test_clean_close_is_seen_by_both_ends() -> None:
    producer = ShmRing.create(4096, role="producer")
    consumer = ShmRing.attach(producer.fds, "consumer")
    assert producer.peer_alive() and consumer.peer_alive()
    producer.push_batch([b"a", b"b"])
    producer.close()
    assert not consumer.peer_alive()
    assert consumer.pop_batch() == [b"a", b"b"]  # what was pushed is still delivered
    consumer.close()

    producer = ShmRing.create(4096, role="producer")
    consumer = ShmRing.attach(producer.fds, "consumer")
    consumer.close()
    assert not producer.peer_alive()
    with pytest.raises(RingClosedError):
        producer.push(b"x")
    producer.close()
    with pytest.raises(RingError, match="closed"):
        producer.push(b"x")


def test_forked_child_dropping_its_inherited_copy_leaves_the_parent_end_open() -> None:
    script = textwrap.dedent(
        """
        import gc, os
        from pyraftkv.ring import ShmRing, RingClosedError
        ring = ShmRing.create(4096, role="consumer")
        pid = os.fork()
        if pid == 0:
            producer = ShmRing.attach(ring.fds, "producer")
            del ring  # the child's copy of the parent's consumer end is collected here
            gc.collect()
            try:
                producer.push(b"after")
            except RingClosedError:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), ring.pop_batch())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "0 [b'after']", result


def test_eventfd_is_written_only_for_a_sleeping_consumer() -> None:
    with ring_pair(1 << 16) as (producer, consumer):
        producer.push(b"first")
        assert consumer.pop_batch() == [b"first"]  # awake: not armed
        producer.push(b"second")
        assert not _readable(consumer.readable_fd())
        assert consumer.pop_batch() == [b"second"]
        assert consumer.pop_batch() == []  # empty: now armed
        producer.push_batch([b"x"] * 3)
        assert _readable(consumer.readable_fd())
        assert len(consumer.pop_batch(100)) == 3
        assert not _readable(consumer.readable_fd())  # the pop read the wake-up back
        assert consumer.pop_batch() == []  # armed again
        for _ in range(10):
            producer.push_batch([b"x"] * 3)
        # ten batches while it sleeps make exactly one eventfd write
        assert os.read(consumer.readable_fd(), 8) == (1).to_bytes(8, sys.byteorder)


def test_asyncio_loop_sleeps_until_messages_arrive() -> None:
    async def consume(ring: ShmRing) -> tuple[list[bytes], int, int]:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        done = loop.create_future()
        calls = idle_calls = 0

        def on_readable() -> None:
            nonlocal calls, idle_calls
            calls += 1
            got = 0
            while batch := ring.pop_batch():
                received.extend(batch)
                got += len(batch)
            idle_calls += got == 0
            if not ring.peer_alive() and not done.done():
                received.extend(ring.pop_batch(1 << 20))
                done.set_result(None)

        while batch := ring.pop_batch():  # what came before the loop slept; then armed
            received.extend(batch)
        loop.add_reader(ring.readable_fd(), on_readable)
        try:
            await asyncio.wait_for(done, 30)
        finally:
            loop.remove_reader(ring.readable_fd())
        return received, calls, idle_calls

    with ShmRing.create(1 << 16, role="consumer") as ring:
        producer = start_producer(ring, 3, 2_000, 100, pause=0.002)
        received, calls, idle_calls = asyncio.run(consume(ring))
        assert producer.wait(timeout=30) == 0
    batches = expected_batches(3, 2_000, 100)
    assert received == [m for batch in batches for m in batch]
    # the producer pauses between batches: about one wake-up per batch (plus its close; a
    # wake-up whose eventfd write lands late can add an idle one), not one per message, and
    # the loop never spins on a readable eventfd
    assert 1 < calls <= len(batches) + 3
    assert idle_calls <= 3


def test_role_and_argument_errors() -> None:
    with pytest.raises(ValueError, match="role"):
        ShmRing.create(4096, role="both")
    with pytest.raises(ValueError, match="capacity"):
        ShmRing.create(0, role="producer")
    with ShmRing.create(5000, role="producer") as producer:
        assert producer.capacity == 8192  # rounded up to a power of two
        with pytest.raises(RingError, match="already has a producer"):
            ShmRing.attach(producer.fds, "producer")
        with pytest.raises(RingError, match="not allowed"):
            producer.pop_batch()
        with pytest.raises(TypeError, match="bytes-like"):
            producer.push_batch(["text"])  # type: ignore[list-item]
        with ShmRing.attach(producer.fds, "consumer") as consumer:
            with pytest.raises(RingError, match="not allowed"):
                consumer.push(b"x")
            with pytest.raises(ValueError, match="max_messages"):
                consumer.pop_batch(0)
    r, w = os.pipe()
    try:
        with pytest.raises(RingError):
            ShmRing.attach((r, r, w), "consumer")
    finally:
        os.close(r)
        os.close(w)
    assert issubclass(RingError, PyraftkvError)


def test_large_messages_grow_the_output_buffer() -> None:
    with ring_pair(4 << 20) as (producer, consumer):
        big = os.urandom(3 << 20)  # larger than the first output buffer
        assert producer.push(big)
        assert consumer.pop_batch() == [big]


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
