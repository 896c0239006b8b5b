"""The write-ahead log: the durable truth of a member (entries, hard state, snapshot marker).

Segment files ``<seq>-<next index>.wal`` (16 hex digits each) live in one directory beside a
``LOCK`` file that one process at a time holds with flock. Segments are preallocated, so an
interrupted write leaves zeros behind it. Records are framed, checksummed and chained in C
(csrc/wal.h documents the format, csrc/wal.c the rule that tells a torn tail from corruption).

Every segment opens with the metadata, the hard state and the snapshot marker in force when it
was created, so releasing older segments never loses them. Truncating a conflicting suffix
writes a TRUNCATE record instead of cutting files: a crash can never lose the hard state or
snapshot marker written after the truncated entries.

Threading: one thread may append and sync (the cffi calls release the GIL, so an asyncio loop
can run meanwhile) while nothing else touches the log; ``sync_latency`` may be read from any
thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._native import ffi, lib
from .errors import PyraftkvError
from .failpoints import ENABLED as FAILPOINTS
from .failpoints import hit

__all__ = [
    "LatencySnapshot",
    "Recovery",
    "SyncLatencyHistogram",
    "TornTail",
    "WALCorruptError",
    "WALError",
    "WALLockedError",
    "WriteAheadLog",
    "delete_segments",
]

DEFAULT_SEGMENT_BYTES = 64 << 20
# A released segment is cut this much at a time, with this pause between cuts, so that no
# fdatasync on the disk waits long behind the freeing of its blocks (see delete_segments).
RELEASE_STEP_BYTES = 4 << 20
RELEASE_STEP_PAUSE_S = 0.005
MIN_SEGMENT_BYTES = 4096
MAX_SEGMENT_BYTES = 1 << 40
LOCK_NAME = "LOCK"

_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_U64_LIMIT = 1 << 64
_SCAN_BATCH = 4096
_ENTRY_PREFIX = struct.Struct("<QQB")
_SEGMENT_PREFIX = struct.Struct("<QQII")
_TWO_U64 = struct.Struct("<QQ")
_THREE_U64 = struct.Struct("<QQQ")
_ONE_U64 = struct.Struct("<Q")
_RECORD_DESCRIPTOR = struct.Struct("=QII")  # wal_record in memory: payload offset, length, type

_SCAN_REASONS = {
    lib.WAL_BAD_HEADER_CUT: "the file ends inside a record header",
    lib.WAL_BAD_HEADER_CRC: "record header checksum mismatch",
    lib.WAL_BAD_HEADER_FIELDS: "record header has an unknown type or an impossible length",
    lib.WAL_BAD_RECORD_CUT: "the file ends inside a record",
    lib.WAL_BAD_COMMIT_MARK: "record commit mark missing or damaged",
    lib.WAL_BAD_CRC: "record checksum mismatch",
    lib.WAL_BAD_DATA_AFTER_END: "non-zero bytes after the end of the log",
    lib.WAL_BAD_LOST_SECTOR: "a zeroed sector inside an unsynced write (lost in a power cut)",
}

Entry = tuple[int, int, int, bytes]  # (term, index, entry_type, data)
HardState = tuple[int, int, int]  # (term, vote, commit)


class WALError(PyraftkvError):
    """The write-ahead log cannot be used: an I/O failure, a missing log, a failed writer."""


class WALCorruptError(WALError):
    """A record before the tail fails verification: the log refuses to open, never drops data."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt write-ahead log: {self.path} at offset {offset}: {reason}")


class WALLockedError(WALError):
    """Another process (or another handle in this one) has the log directory open."""


@dataclass(frozen=True)
class TornTail:
    """An interrupted last write found on open and cut off: where, how much, and why."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str


@dataclass(frozen=True)
class Recovery:
    """What a log holds when opened: entries after the snapshot are contiguous, latest versions."""

    metadata: bytes
    hard_state: HardState
    snapshot: tuple[int, int] | None  # (index, term)
    snapshot_data: bytes  # what append_snapshot was given with it (b"" without a snapshot)
    entries: list[Entry]
    torn_tail: TornTail | None


@dataclass(frozen=True)
class LatencySnapshot:
    """fdatasync latencies at one moment: totals, estimated quantiles, non-empty buckets."""

    count: int
    sum_seconds: float
    max_seconds: float
    p50_seconds: float
    p90_seconds: float
    p99_seconds: float
    buckets: tuple[tuple[float, int], ...]  # (upper bound in seconds, samples in bucket)


class SyncLatencyHistogram:
    """Log-scale histogram of the log's fdatasync durations, kept in C; readable from any thread.

    Buckets are 1/8 of a power of two wide, so quantiles (the upper bound of the bucket that
    holds the quantile, capped at the maximum) are at most 12.5 % high.
    """

    def __init__(self, writer: object) -> None:
        self._writer = writer

    def snapshot(self) -> LatencySnapshot:
        """Copy the counters and derive p50/p90/p99."""
        counts = ffi.new("uint64_t[]", lib.WAL_HISTOGRAM_BUCKETS)
        totals = ffi.new("uint64_t[3]")
        lib.wal_sync_histogram(self._writer, counts, totals, totals + 1, totals + 2)
        count, sum_ns, max_ns = totals
        buckets = [(_bucket_upper_ns(i), n) for i, n in enumerate(counts) if n]

        def quantile(q: float) -> float:
            if count == 0:
                return 0.0
            rank, seen = q * count, 0
            for upper_ns, n in buckets:
                seen += n
                if seen >= rank:
                    return min(upper_ns, max_ns) / 1e9
            return max_ns / 1e9

        return LatencySnapshot(
            count=count,
            sum_seconds=sum_ns / 1e9,
            max_seconds=max_ns / 1e9,
            p50_seconds=quantile(0.50),
            p90_seconds=quantile(0.90),
            p99_seconds=quantile(0.99),
            buckets=tuple((upper / 1e9, n) for upper, n in buckets),
        )


def _bucket_upper_ns(index: int) -> int:
    """Exclusive upper bound of a histogram bucket (the C side's histogram_bucket, inverted)."""
    if index < 16:
        return index + 1
    octave, sub = index // 8 + 2, index % 8
    return (9 + sub) << (octave - 3)


@dataclass(frozen=True)
class _Segment:
    seq: int
    first_index: int  # the index the next entry had when the segment was created
    path: Path


def _record_size(payload_len: int) -> int:
    return ((lib.WAL_HEADER_BYTES + payload_len + 7) & ~7) + lib.WAL_COMMIT_MARK_BYTES


def _check_u64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _U64_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _preallocate(fd: int, size: int) -> None:
    """Reserve the segment's blocks now: appends then never allocate, and unwritten space reads
    as zeros (which the torn-write rule relies on)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)


def _list_segments(directory: Path) -> list[_Segment]:
    segments = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            seq, first = (int(part, 16) for part in match.groups())
            segments.append(_Segment(seq, first, directory / name))
    segments.sort(key=lambda s: s.seq)
    return segments


def take_flock(path: str | os.PathLike) -> int:
    """Hold an exclusive flock on ``path`` for as long as the returned descriptor is open,
    with this process's pid in the file; BlockingIOError naming the holder's pid if
    another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BlockingIOError(f"lock held by pid {holder}") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _lock_directory(directory: Path) -> int:
    """Take the directory's flock."""
    try:
        return take_flock(directory / LOCK_NAME)
    except BlockingIOError as exc:
        raise WALLockedError(f"write-ahead log {directory} is in use ({exc})") from None


def _corrupt(segment: _Segment, payload_start: int, reason: str) -> WALCorruptError:
    return WALCorruptError(segment.path, payload_start - lib.WAL_HEADER_BYTES, reason)


class _Replay:
    """Rebuilds the log's state from its records in order, checking every invariant the writer
    keeps; a violation is corruption at the record's offset."""

    def __init__(self) -> None:
        self.metadata: bytes | None = None
        self.hard_state: HardState = (0, 0, 0)
        self.snapshot: tuple[int, int] | None = None
        self.snapshot_data = b""
        self.last_index = 0
        self.entries: list[Entry] = []  # indexes (snapshot index, last_index], contiguous
        self.crc = 0  # chain value at the end of the previous segment

    @property
    def snapshot_index(self) -> int:
        return self.snapshot[0] if self.snapshot else 0

    def next_index(self) -> int:
        return max(self.last_index, self.snapshot_index) + 1

    def segment(self, segment: _Segment, data: mmap.mmap, start: int, length: int) -> None:
        seq, last_index, prev_crc, _ = _SEGMENT_PREFIX.unpack_from(data, start)
        metadata = data[start + _SEGMENT_PREFIX.size : start + length]
        if seq != segment.seq:
            raise WALCorruptError(segment.path, 0, f"segment header says seq {seq}")
        if self.metadata is None:  # the oldest segment kept
            self.metadata, self.last_index = metadata, last_index
            return
        if metadata != self.metadata:
            raise WALCorruptError(segment.path, 0, "metadata differs from the previous segment")
        if prev_crc != self.crc or last_index != self.last_index:
            raise WALCorruptError(segment.path, 0, "does not continue the previous segment")
        if segment.first_index != self.next_index():
            raise WALCorruptError(segment.path, 0, "file name does not match the log's state")

    def records(self, segment: _Segment, data: mmap.mmap, descriptors: Iterable) -> None:
        entries, prefix = self.entries, _ENTRY_PREFIX.size
        for start, length, kind in descriptors:
            if kind == lib.WAL_RECORD_ENTRY:
                term, index, entry_type = _ENTRY_PREFIX.unpack_from(data, start)
                if index != self.next_index():
                    raise _corrupt(
                        segment, start, f"entry {index} where {self.next_index()} belongs"
                    )
                entries.append((term, index, entry_type, data[start + prefix : start + length]))
                self.last_index = index
            elif kind == lib.WAL_RECORD_HARD_STATE:
                self.hard_state = _THREE_U64.unpack_from(data, start)
            elif kind == lib.WAL_RECORD_SNAPSHOT:
                self._snapshot(segment, start, _TWO_U64.unpack_from(data, start))
                self.snapshot_data = data[start + _TWO_U64.size : start + length]
            elif kind == lib.WAL_RECORD_TRUNCATE:
                self._truncate(segment, start, _ONE_U64.unpack_from(data, start)[0])
            else:
                raise _corrupt(segment, start, "segment header inside a segment")

    def _snapshot(self, segment: _Segment, start: int, snapshot: tuple[int, int]) -> None:
        if snapshot[0] < self.snapshot_index:
            raise _corrupt(segment, start, "snapshot marker goes backwards")
        self.snapshot = snapshot
        if self.entries:  # contiguous: the covered ones are a prefix
            del self.entries[: max(0, snapshot[0] + 1 - self.entries[0][1])]

    def _truncate(self, segment: _Segment, start: int, index: int) -> None:
        if not self.snapshot_index < index <= self.next_index():
            raise _corrupt(segment, start, f"truncation at index {index} is out of range")
        if self.entries:
            del self.entries[max(0, index - self.entries[0][1]) :]
        self.last_index = min(self.last_index, index - 1)


class WriteAheadLog:
    """A member's durable log: append entries and hard state in batches, fdatasync, recover.

    Get one with ``create`` (a new log) or ``open`` (an existing one, with its Recovery).
    """

    def __init__(self, directory: Path, lock_fd: int, segment_bytes: int) -> None:
        self._directory = directory
        self._lock_fd = lock_fd
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._fd = -1
        writer = ffi.new("wal_writer **")
        _raise_for(lib.wal_writer_new(writer), "allocating the writer")
        self._writer = ffi.gc(writer[0], lib.wal_writer_free)
        self.sync_latency = SyncLatencyHistogram(self._writer)
        self._needed = ffi.new("uint64_t *")
        self._elapsed = ffi.new("uint64_t *")
        self._metadata = b""
        self._hard_state: HardState = (0, 0, 0)
        self._snapshot: tuple[int, int] | None = None
        self._snapshot_data = b""
        self._last_index = 0
        self._broken: str | None = None

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        metadata: bytes,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> WriteAheadLog:
        """Start a new, empty log in ``path`` (created if missing; must hold no log yet)."""
        metadata = bytes(metadata)
        directory = Path(path)
        _check_segment_bytes(segment_bytes)
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock_directory(directory)
        wal = cls(directory, lock_fd, segment_bytes)
        try:
            if _list_segments(directory):
                raise WALError(f"a write-ahead log already exists in {directory}")
            wal._remove_temporary_files()
            wal._metadata = metadata
            wal._start_segment(seq=0, batch_bytes=0)
            _fsync_dir(directory.resolve().parent)
        except BaseException:
            wal.close()
            raise
        return wal

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> tuple[WriteAheadLog, Recovery]:
        """Open an existing log: verify every record, cut off a torn tail, return what it holds.

        Raises WALCorruptError (naming the file and offset) when a record before the tail fails.
        """
        directory = Path(path)
        _check_segment_bytes(segment_bytes)
        if not directory.is_dir():
            raise WALError(f"no write-ahead log in {directory}: not a directory")
        lock_fd = _lock_directory(directory)
        wal = cls(directory, lock_fd, segment_bytes)
        try:
            recovery = wal._recover()
        except BaseException:
            wal.close()
            raise
        return wal, recovery

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is a directory holding at least one segment of a log."""
        directory = Path(path)
        return directory.is_dir() and bool(_list_segments(directory))

    def _remove_temporary_files(self) -> None:
        # A segment is written under <name>.tmp and renamed once complete and synced; a
        # released one is renamed to <name>.released before it is cut (delete_segments).
        for name in os.listdir(self._directory):
            if name.endswith((".wal.tmp", ".wal.released")):
                os.unlink(self._directory / name)

    def _recover(self) -> Recovery:
        self._remove_temporary_files()
        segments = _list_segments(self._directory)
        if not segments:
            raise WALError(f"no write-ahead log in {self._directory}: no segment files")
        for older, newer in zip(segments, segments[1:], strict=False):
            if newer.seq != older.seq + 1:
                raise WALCorruptError(newer.path, 0, f"segment {older.seq + 1} is missing")
        replay = _Replay()
        torn: TornTail | None = None
        for segment in segments:
            end, torn = self._scan_segment(segment, replay, segment is segments[-1])
        if replay.entries and replay.entries[0][1] != (replay.snapshot_index + 1):
            raise WALCorruptError(self._directory, 0, "entries do not follow the snapshot")
        last = segments[-1]
        fd = os.open(last.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = max(os.fstat(fd).st_size, self._segment_bytes)
            if torn is not None:
                os.ftruncate(fd, end)  # nothing stale may remain beyond the tail
            _preallocate(fd, size)
            os.fdatasync(fd)
            _raise_for(lib.wal_writer_attach(self._writer, fd, end, size, replay.crc), "attach")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._segments = segments
        self._metadata = replay.metadata or b""
        self._hard_state = replay.hard_state
        self._snapshot = replay.snapshot
        self._snapshot_data = replay.snapshot_data
        self._last_index = replay.last_index
        return Recovery(
            metadata=self._metadata,
            hard_state=replay.hard_state,
            snapshot=replay.snapshot,
            snapshot_data=replay.snapshot_data,
            entries=replay.entries,
            torn_tail=torn,
        )

    def _scan_segment(
        self, segment: _Segment, replay: _Replay, is_last: bool
    ) -> tuple[int, TornTail | None]:
        """Verify one segment and replay its records; returns where its valid records end."""
        with open(segment.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise WALCorruptError(segment.path, 0, "empty segment file")
            data = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)
        buf = ffi.from_buffer(data)
        try:
            state = ffi.new("wal_scan_state *")
            records = ffi.new("wal_record[]", _SCAN_BATCH)
            count = ffi.new("size_t *")
            opened = False
            while True:
                _raise_for(lib.wal_scan(buf, size, state, records, _SCAN_BATCH, count), "scan")
                descriptors = _RECORD_DESCRIPTOR.iter_unpack(ffi.buffer(records, 16 * count[0]))
                if not opened and count[0]:
                    start, length, kind = next(descriptors)
                    if kind != lib.WAL_RECORD_SEGMENT:
                        raise WALCorruptError(segment.path, 0, "no segment header record")
                    replay.segment(segment, data, start, length)
                    opened = True
                replay.records(segment, data, descriptors)
                if state.status != lib.WAL_SCAN_MORE:
                    break
            reason = _SCAN_REASONS.get(state.reason, "unknown failure")
            if state.status == lib.WAL_SCAN_CORRUPT or (
                state.status == lib.WAL_SCAN_TORN and not is_last
            ):
                raise WALCorruptError(segment.path, state.offset, reason)
            if not opened:
                raise WALCorruptError(segment.path, 0, "no segment header record")
            replay.crc = state.crc
            torn = None
            if state.status == lib.WAL_SCAN_TORN:
                dropped = state.data_end - state.offset
                torn = TornTail(str(segment.path), state.offset, dropped, reason)
            return state.offset, torn
        finally:
            ffi.release(buf)
            data.close()

    # ---- appending -----------------------------------------------------------------------

    def _next_index(self) -> int:
        snapshot_index = self._snapshot[0] if self._snapshot else 0
        return max(self._last_index, snapshot_index) + 1

    def _check_writable(self) -> None:
        if self._broken is not None:
            raise WALError(f"the write-ahead log failed earlier ({self._broken}); reopen it")
        if self._fd < 0:
            raise WALError("the write-ahead log is closed")

    def append(self, entries: Sequence[Entry] = (), hard_state: HardState | None = None) -> None:
        """Append entries (term, index, entry_type, data), indexes continuing the log, and
        optionally a hard state (term, vote, commit), with one write. Durable after ``sync``."""
        self._check_writable()
        count = len(entries)
        if count:
            try:
                terms, indexes, types, datas = zip(*entries, strict=True)
            except (TypeError, ValueError):
                raise ValueError("entries must be (term, index, entry_type, data) tuples") from None
            first = indexes[0]
            expected = self._next_index()
            if first != expected or not isinstance(first, int):
                raise ValueError(f"entries must start at index {expected}, got {first!r}")
            if indexes != tuple(range(first, first + count)):
                raise ValueError("entry indexes must be contiguous and ascending")
            try:
                terms_packed = struct.pack(f"={count}Q", *terms)
            except struct.error:
                raise ValueError("entry terms must be integers in [0, 2**64)") from None
            try:
                types_packed = bytes(types)
            except (TypeError, ValueError):
                raise ValueError("entry types must be integers in [0, 256)") from None
            try:
                blob = b"".join(datas)
                lens_packed = struct.pack(f"={count}I", *map(len, datas))
            except (TypeError, struct.error):
                raise ValueError("entry data must be bytes-like and under 1 GiB") from None
            args = (
                count,
                first,
                ffi.from_buffer("uint64_t[]", terms_packed),
                ffi.from_buffer("uint8_t[]", types_packed),
                ffi.from_buffer("uint32_t[]", lens_packed),
                ffi.from_buffer("uint8_t[]", blob),
                len(blob),
            )
        elif hard_state is None:
            return
        else:
            args = (0, 0, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0)
        hard_state_arg = ffi.NULL
        if hard_state is not None:
            hard_state = _check_hard_state(hard_state)
            hard_state_arg = ffi.new("uint64_t[3]", hard_state)
        rc = lib.wal_append_entries(self._writer, *args, hard_state_arg, self._needed)
        if rc == lib.WAL_E_FULL:
            self._roll_over(self._needed[0])
            rc = lib.wal_append_entries(self._writer, *args, hard_state_arg, self._needed)
        self._check_write(rc, "append")
        if count:
            self._last_index = first + count - 1
        if hard_state is not None:
            self._hard_state = hard_state

    def append_snapshot(self, index: int, term: int, data: bytes = b"") -> None:
        """Record that a snapshot covers the log up to ``index`` (whose term is ``term``), with
        opaque ``data`` kept beside it (e.g. the membership at ``index``)."""
        self._check_writable()
        _check_u64("snapshot index", index)
        _check_u64("snapshot term", term)
        try:
            data = bytes(data)
        except TypeError:
            raise ValueError("snapshot data must be bytes-like") from None
        if self._snapshot is not None and (index < self._snapshot[0] or term < self._snapshot[1]):
            raise ValueError(
                f"snapshot ({index}, {term}) is older than the current one {self._snapshot}"
            )
        self._append_record(lib.WAL_RECORD_SNAPSHOT, _TWO_U64.pack(index, term) + data)
        self._snapshot = (index, term)
        self._snapshot_data = data

    def truncate_from(self, index: int) -> None:
        """Void the entries at ``index`` and above (a follower's conflicting suffix); the next
        append starts at ``index``. The hard state and snapshot marker are kept."""
        self._check_writable()
        _check_u64("index", index)
        snapshot_index = self._snapshot[0] if self._snapshot else 0
        if not snapshot_index < index <= self._next_index():
            raise ValueError(
                f"can only truncate from an index in ({snapshot_index}, {self._next_index()}], "
                f"got {index}"
            )
        if index == self._next_index():
            return
        self._append_record(lib.WAL_RECORD_TRUNCATE, _ONE_U64.pack(index))
        self._last_index = index - 1

    def _append_record(self, kind: int, payload: bytes) -> None:
        rc = lib.wal_append_record(self._writer, kind, payload, len(payload), self._needed)
        if rc == lib.WAL_E_FULL:
            self._roll_over(self._needed[0])
            rc = lib.wal_append_record(self._writer, kind, payload, len(payload), self._needed)
        self._check_write(rc, "append")

    def sync(self) -> float:
        """fdatasync what was appended; returns the seconds it took (also kept in sync_latency)."""
        self._check_writable()
        self._check_write(lib.wal_sync(self._writer, self._elapsed), "fdatasync")
        return self._elapsed[0] / 1e9

    def _check_write(self, rc: int, what: str) -> None:
        if rc == 0:
            return
        if rc == lib.WAL_E_FAILED or rc not in (-errno.EINVAL, -errno.EMSGSIZE):
            self._broken = self._broken or f"{what}: {_describe(rc)}"
        _raise_for(rc, what)

    # ---- segments ------------------------------------------------------------------------

    def _roll_over(self, batch_bytes: int) -> None:
        """The batch does not fit: make the current segment durable and start the next one."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._broken = f"fdatasync before a new segment: {exc}"
            raise WALError(self._broken) from exc
        self._start_segment(self._segments[-1].seq + 1, batch_bytes)

    def _start_segment(self, seq: int, batch_bytes: int) -> None:
        """Create segment ``seq`` big enough for its opening records plus ``batch_bytes``.

        Written as <name>.tmp, synced, then renamed, so a segment file always has a complete
        opening; anything failing after the writer moved to it leaves the log broken."""
        next_index = self._next_index()
        path = self._directory / f"{seq:016x}-{next_index:016x}.wal"
        temporary = path.with_name(path.name + ".tmp")
        snapshot = _TWO_U64.pack(*self._snapshot) + self._snapshot_data if self._snapshot else None
        opening = (
            _record_size(lib.WAL_SEGMENT_PREFIX_BYTES + len(self._metadata))
            + _record_size(_THREE_U64.size)
            + (_record_size(len(snapshot)) if snapshot else 0)
        )
        size = max(self._segment_bytes, opening + batch_bytes)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        moved = False
        try:
            _preallocate(fd, size)
            rc = lib.wal_start_segment(
                self._writer, fd, size, seq, self._last_index,
                self._metadata, len(self._metadata),
                ffi.new("uint64_t[3]", self._hard_state),
                snapshot or ffi.NULL, len(snapshot or b""),
            )  # fmt: skip
            _raise_for(rc, "starting a segment")
            moved = True
            os.fdatasync(fd)
            if FAILPOINTS and seq:
                hit("walSegmentRollover")
            os.rename(temporary, path)
            _fsync_dir(self._directory)
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if moved:
                self._broken = f"starting segment {path.name}: {exc}"
                self._fd = -2  # the writer points at a closed file: nothing may use it
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(seq, next_index, path))

    def release_before(self, index: int) -> None:
        """Delete the segments whose entries all lie below ``index`` (see detach_before)."""
        delete_segments(self.detach_before(index))

    def detach_before(self, index: int) -> list[Path]:
        """Drop the segments whose entries all lie below ``index`` from the log and return
        their paths, oldest first, for delete_segments; only entries a snapshot covers can
        go, so ``index`` may be at most the snapshot index + 1. A restart before they are
        deleted reads them again, as it would after a stop just before this call."""
        self._check_writable()
        _check_u64("index", index)
        snapshot_index = self._snapshot[0] if self._snapshot else 0
        if index > snapshot_index + 1:
            raise ValueError(
                f"cannot release entries below {index}: the snapshot only covers {snapshot_index}"
            )
        doomed = 0
        while doomed + 1 < len(self._segments) and self._segments[doomed + 1].first_index <= index:
            doomed += 1
        if not doomed:
            return []
        # The snapshot marker that allows this must be durable before its entries disappear.
        self.sync()
        paths = [segment.path for segment in self._segments[:doomed]]
        del self._segments[:doomed]
        return paths

    # ---- state ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The log's directory."""
        return self._directory

    @property
    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first."""
        return [segment.path for segment in self._segments]

    @property
    def last_index(self) -> int:
        """Index of the last entry appended (after truncation), 0 when there is none."""
        return self._last_index

    @property
    def snapshot(self) -> tuple[int, int] | None:
        """The latest snapshot marker (index, term), or None."""
        return self._snapshot

    @property
    def snapshot_data(self) -> bytes:
        """The data given with the latest snapshot marker."""
        return self._snapshot_data

    @property
    def hard_state(self) -> HardState:
        """The latest hard state (term, vote, commit) appended."""
        return self._hard_state

    def close(self) -> None:
        """Close the segment and release the directory lock; the log can then be reopened."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the only descriptor releases the flock
            self._lock_fd = -1

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def delete_segments(paths: list[Path]) -> None:
    """Delete segments detach_before returned. Oldest first, each is renamed out of the log
    (a stop midway leaves the rest contiguous; the next open removes what was renamed),
    then shrunk in steps and unlinked: freeing a 64 MiB segment in one go took 100-150 ms
    here (ext4 freeing and trimming its blocks in one journal commit) and held up every
    fdatasync on the disk meanwhile, so a running member does this off its loop."""
    if not paths:
        return
    released = [path.with_name(path.name + ".released") for path in paths]
    for path, renamed in zip(paths, released, strict=True):
        os.rename(path, renamed)
    _fsync_dir(paths[0].parent)  # out of the log for good before any of it is cut
    for path in released:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            while size > 0:
                size = max(0, size - RELEASE_STEP_BYTES)
                os.ftruncate(fd, size)
                time.sleep(RELEASE_STEP_PAUSE_S)
        finally:
            os.close(fd)
        os.unlink(path)


def _check_segment_bytes(segment_bytes: int) -> None:
    if (
        not isinstance(segment_bytes, int)
        or not MIN_SEGMENT_BYTES <= segment_bytes <= MAX_SEGMENT_BYTES
        or segment_bytes % 8
    ):
        raise ValueError(
            f"segment_bytes must be a multiple of 8 in [{MIN_SEGMENT_BYTES}, 2**40], "
            f"got {segment_bytes!r}"
        )


def _check_hard_state(hard_state: object) -> HardState:
    try:
        term, vote, commit = hard_state  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError("hard_state must be a (term, vote, commit) tuple") from None
    return (
        _check_u64("hard state term", term),
        _check_u64("hard state vote", vote),
        _check_u64("hard state commit", commit),
    )


def _describe(rc: int) -> str:
    if rc == lib.WAL_E_FAILED:
        return "an earlier write or fdatasync failed"
    if rc == lib.WAL_E_FULL:
        return "batch does not fit in the segment"
    if rc == lib.WAL_E_INVARIANT:
        return "the writer reached an impossible state (a bug)"
    return os.strerror(-rc)


def _raise_for(rc: int, what: str) -> None:
    if rc == 0:
        return
    if rc in (-errno.EINVAL, -errno.EMSGSIZE):
        raise ValueError(f"{what}: {_describe(rc)}")
    raise WALError(f"{what}: {_describe(rc)}")
