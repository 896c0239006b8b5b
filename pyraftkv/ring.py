"""A single-producer single-consumer ring of messages in shared memory, between two processes.

The application and Raft processes talk through two of these, one per direction. The ring is a
memfd plus two eventfds (csrc/ring.h); hand ``ring.fds`` to the other process (``pass_fds`` or
fork) and ``attach`` there. Batches cross in one C call each, and an eventfd is written only
when the other side has said it is about to sleep, so a busy pair makes no system calls.

Waiting with asyncio::

    loop.add_reader(ring.readable_fd(), on_messages)   # consumer
    def on_messages():
        while batch := ring.pop_batch():
            handle(batch)        # an empty pop re-arms the wake-up before it returns

and the producer, when ``push_batch`` returned fewer than it was given, waits on
``writable_fd()`` the same way and pushes the rest when it turns readable.

Each end is used by one thread at a time.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from itertools import accumulate

from ._native import ffi, lib
from .errors import PyraftkvError

__all__ = ["RingClosedError", "RingError", "ShmRing"]

_ROLES = {"producer": lib.RING_PRODUCER, "consumer": lib.RING_CONSUMER}
_MAX_CAPACITY = 1 << 32
_FIRST_OUT_BYTES = 1 << 20


class RingError(PyraftkvError):
    """The ring cannot be created, attached or used."""


class RingClosedError(RingError):
    """The consumer has closed its end: nothing pushed now would ever be read."""


def _check_role(role: str) -> int:
    if role not in _ROLES:
        raise ValueError(f"role must be 'producer' or 'consumer', got {role!r}")
    return _ROLES[role]


class ShmRing:
    """One end (producer or consumer) of a shared-memory message ring."""

    def __init__(self, handle: object, role: str) -> None:
        self._handle = ffi.gc(handle, lib.ring_close)
        self._role = role
        capacity = ffi.new("uint64_t *")
        lib.ring_capacity(self._handle, capacity)
        self._capacity = capacity[0]
        fds = ffi.new("int[3]")
        lib.ring_fds(self._handle, fds, fds + 1, fds + 2)
        self._fds = (fds[0], fds[1], fds[2])
        self._count = ffi.new("size_t *")
        self._bytes = ffi.new("size_t *")
        self._out = ffi.new("uint8_t[]", min(self._capacity, _FIRST_OUT_BYTES))
        self._lens = ffi.new("uint32_t[]", 1024)

    @classmethod
    def create(cls, capacity_bytes: int, *, role: str) -> ShmRing:
        """Make a new ring of at least ``capacity_bytes`` (rounded up to a power of two, at
        least a page) and be its ``role`` end; the other process attaches with ``fds``."""
        role_code = _check_role(role)
        if not isinstance(capacity_bytes, int) or not 0 < capacity_bytes <= _MAX_CAPACITY:
            raise ValueError(f"capacity_bytes must be in (0, 2**32], got {capacity_bytes!r}")
        capacity = max(1 << (capacity_bytes - 1).bit_length(), os.sysconf("SC_PAGESIZE"))
        handle = ffi.new("shm_ring **")
        _raise_for(lib.ring_create(capacity, role_code, handle), "creating the ring")
        return cls(handle[0], role)

    @classmethod
    def attach(cls, fds: tuple[int, int, int], role: str) -> ShmRing:
        """Be the ``role`` end of a ring made by another process; ``fds`` are duplicated, so the
        caller may close its copies."""
        role_code = _check_role(role)
        if len(fds) != 3 or not all(isinstance(fd, int) and fd >= 0 for fd in fds):
            raise ValueError(f"fds must be the ring's three descriptors, got {fds!r}")
        handle = ffi.new("shm_ring **")
        rc = lib.ring_attach(fds[0], fds[1], fds[2], role_code, handle)
        if rc == -errno.EBUSY:
            raise RingError(f"the ring already has a {role}")
        if rc == -errno.EPROTO:
            raise RingError("the descriptors do not hold a pyraftkv ring")
        _raise_for(rc, "attaching to the ring")
        return cls(handle[0], role)

    @property
    def fds(self) -> tuple[int, int, int]:
        """(memfd, messages eventfd, space eventfd): what the other process attaches with."""
        return self._fds

    @property
    def role(self) -> str:
        """'producer' or 'consumer'."""
        return self._role

    @property
    def capacity(self) -> int:
        """Bytes of message space (each message takes 4 + its length, rounded up to 8)."""
        return self._capacity

    @property
    def max_message_bytes(self) -> int:
        """The largest message the ring can ever hold."""
        return self._capacity - lib.RING_MESSAGE_HEADER_BYTES

    def readable_fd(self) -> int:
        """The eventfd the consumer waits on: readable once messages arrive while it sleeps."""
        return self._fds[1]

    def writable_fd(self) -> int:
        """The eventfd the producer waits on: readable once space frees up after a short push."""
        return self._fds[2]

    def push(self, message: bytes) -> bool:
        """Append one message; False when it does not fit now (wait on ``writable_fd``)."""
        return self.push_batch((message,)) == 1

    def push_batch(self, messages: Sequence[bytes]) -> int:
        """Append messages in order while they fit, in one C call; returns how many went in."""
        handle = self._live()
        count = len(messages)  # 0 still calls C: it reads back a pending wake-up, if any
        try:
            data = b"".join(messages)
            lens = struct.pack(f"={count}I", *map(len, messages))
        except (TypeError, struct.error):
            raise TypeError("messages must be bytes-like objects under 4 GiB") from None
        rc = lib.ring_push(
            handle, count, ffi.from_buffer("uint32_t[]", lens), data, len(data), self._count
        )
        if rc == -errno.EMSGSIZE:
            raise ValueError(
                f"a message of {max(map(len, messages))} bytes can never fit in this ring "
                f"(at most {self.max_message_bytes} bytes); nothing was pushed"
            )
        if rc == -errno.EPIPE:
            raise RingClosedError("the consumer has closed the ring")
        _raise_for(rc, "push")
        return self._count[0]

    def pop_batch(self, max_messages: int = 1024) -> list[bytes]:
        """Take up to ``max_messages`` messages in order, in one C call. An empty result means
        the ring is empty and the wake-up is armed: ``readable_fd`` fires on the next push."""
        handle = self._live()
        if not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be a positive integer, got {max_messages!r}")
        if max_messages > len(self._lens):
            self._lens = ffi.new("uint32_t[]", max_messages)
        while True:
            rc = lib.ring_pop(
                handle, max_messages, self._out, len(self._out), self._lens,
                self._count, self._bytes,
            )  # fmt: skip
            if rc != -errno.ENOBUFS:
                break
            self._out = ffi.new("uint8_t[]", max(self._bytes[0], 2 * len(self._out)))
        _raise_for(rc, "pop")
        count = self._count[0]
        if count == 0:
            return []
        blob = ffi.buffer(self._out, self._bytes[0])[:]
        if count == 1:
            return [blob]
        lens = ffi.unpack(self._lens, count)
        return [
            blob[end - length : end] for length, end in zip(lens, accumulate(lens), strict=True)
        ]

    def peer_alive(self) -> bool:
        """False once the other end has closed or its process has exited (even by SIGKILL)."""
        alive = ffi.new("int *")
        _raise_for(lib.ring_peer_alive(self._live(), alive), "checking the peer")
        return bool(alive[0])

    def _live(self) -> object:
        if self._handle is None:
            raise RingError("the ring is closed")
        return self._handle

    def close(self) -> None:
        """Mark this end closed (waking the peer), unmap the memory and close the descriptors."""
        if self._handle is not None:
            ffi.release(self._handle)  # runs ring_close now
            self._handle = None

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _raise_for(rc: int, what: str) -> None:
    if rc == 0:
        return
    if rc == -errno.EPERM:
        raise RingError(f"{what}: not allowed at this end of the ring")
    raise RingError(f"{what}: {os.strerror(-rc)}")
