"""The proposal batch's stage-trace readings: a traced batch starts when its first write
arrived (as the client connection stamped it), or when it joined the batch for a write
handled outside a client read; an untraced batch carries no readings. And the share of
batches sent while an earlier one was unanswered (cpu_pairing.py's signal)."""

from __future__ import annotations

import time

from pyraftkv.node import ringproto as rp
from pyraftkv.node.proposals import Proposals
from pyraftkv.protocol.methods import BY_NAME

PUT = BY_NAME["Put"].number


def proposals(interval_ms: float) -> tuple[Proposals, list[bytes]]:
    sent: list[bytes] = []
    return Proposals(7, sent.append, 5.0, interval_ms), sent


def traced_readings(message: bytes) -> tuple[int, int]:
    assert message[0] == rp.PROPOSE_TRACED
    return rp.unpack(message, rp.TRACED)


def test_a_traced_batch_starts_when_its_first_write_arrived():
    batch, sent = proposals(1.0)
    arrived = time.monotonic_ns() - 3_000_000
    batch.arrived_ns = arrived
    batch.add(None, PUT, b"first", "")
    batch.arrived_ns = arrived + 1_000_000  # a later read's write joins the same batch
    batch.add(None, PUT, b"second", "")
    batch.flush()
    received, batched = traced_readings(sent[0])
    assert received == arrived
    assert batched >= arrived + 3_000_000


def test_a_write_outside_a_read_starts_when_it_joins_the_batch():
    batch, sent = proposals(1.0)
    before = time.monotonic_ns()
    batch.add(None, PUT, b"member's own", "")
    after = time.monotonic_ns()
    batch.flush()
    received, batched = traced_readings(sent[0])
    assert before <= received <= after <= batched


def test_untraced_batches_carry_no_readings():
    batch, sent = proposals(0.0)
    batch.arrived_ns = time.monotonic_ns()
    batch.add(None, PUT, b"v", "")
    batch.flush()
    assert sent[0][0] == rp.PROPOSE
    traced, sent = proposals(1000.0)  # one batch per second: the next one goes plain
    traced.add(None, PUT, b"a", "")
    traced.flush()
    traced.add(None, PUT, b"b", "")
    traced.flush()
    assert [message[0] for message in sent] == [rp.PROPOSE_TRACED, rp.PROPOSE]


def test_overlap_counts_batches_sent_while_an_earlier_reply_was_awaited():
    batch, _sent = proposals(0.0)
    assert batch.take_overlap() == (0, 0.0)  # nothing sent
    batch.add(None, PUT, b"only the member's own", "")
    batch.flush()
    assert batch.take_overlap() == (0, 0.0)  # no client's write in it
    for _ in range(3):  # one writer: each answered before the next is sent
        batch.add(object(), PUT, b"v", "")
        batch.add(None, PUT, b"the member's own", "")
        batch.flush()
        (request_id,) = batch.pending
        batch.pending.pop(request_id)  # answered, as the apply does
    assert batch.take_overlap() == (3, 0.0)
    batch.add(object(), PUT, b"a", "")
    batch.flush()
    batch.add(object(), PUT, b"b", "")  # sent while a's reply is awaited
    batch.flush()
    assert batch.take_overlap() == (2, 0.5)
    assert batch.take_overlap() == (0, 0.0)  # taken: counts start again
