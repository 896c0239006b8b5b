"""Write-ahead log on real files with real fdatasync: round trips, torn tails, corruption,
truncation, release, rollover, the directory lock and bad arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyraftkv.errors import PyraftkvError
from pyraftkv.wal import (
    TornTail,
    WALCorruptError,
    WALError,
    WALLockedError,
    WriteAheadLog,
    delete_segments,
)

SEGMENT = 4096  # small segments so rollover is exercised everywhere
META = b"cluster=7;member=3"


def entries(first: int, last: int, term: int = 1, size: int = 40) -> list:
    return [(term, i, i % 2, bytes([i % 251]) * (size + i % 7)) for i in range(first, last + 1)]


def reopen(path: Path):
    wal, recovery = WriteAheadLog.open(path, segment_bytes=SEGMENT)
    wal.close()
    return recovery


def data_end(path: Path) -> int:
    """Offset just past the last non-zero byte: the end of the records in a segment."""
    return len(path.read_bytes().rstrip(b"\0"))


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "wal"


def test_round_trip_of_every_record_type(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 3), hard_state=(1, 2, 1))
        wal.append([(2, 4, 255, b"")])
        wal.append(hard_state=(2, 0, 3))
        wal.append_snapshot(2, 1, b"members=1,2,3")
        wal.sync()
    recovery = reopen(wal_dir)
    assert recovery.metadata == META
    assert recovery.hard_state == (2, 0, 3)
    assert recovery.snapshot == (2, 1)
    assert recovery.snapshot_data == b"members=1,2,3"
    assert recovery.entries == entries(3, 3) + [(2, 4, 255, b"")]
    assert recovery.torn_tail is None


def test_fresh_log_recovers_empty(wal_dir: Path) -> None:
    WriteAheadLog.create(wal_dir, b"").close()
    assert WriteAheadLog.exists(wal_dir)
    wal, recovery = WriteAheadLog.open(wal_dir)
    wal.close()
    assert recovery.metadata == b""
    assert recovery.hard_state == (0, 0, 0)
    assert recovery.snapshot is None
    assert recovery.snapshot_data == b""
    assert recovery.entries == []
    assert os.path.getsize(wal.segment_paths[0]) == 64 << 20  # preallocated default segment


def test_reopened_log_keeps_appending(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 5))
        wal.sync()
    wal, _ = WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
    with wal:
        assert wal.last_index == 5
        wal.append(entries(6, 9), hard_state=(1, 1, 9))
        wal.sync()
    recovery = reopen(wal_dir)
    assert recovery.entries == entries(1, 9)
    assert recovery.hard_state == (1, 1, 9)


def test_sync_is_timed_into_the_histogram(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        durations = []
        for i in range(1, 21):
            wal.append(entries(i, i))
            durations.append(wal.sync())
        snap = wal.sync_latency.snapshot()
    assert snap.count == 20
    assert all(d > 0 for d in durations)
    assert snap.max_seconds == pytest.approx(max(durations), rel=1e-6)
    assert snap.sum_seconds == pytest.approx(sum(durations), rel=1e-6)
    assert sum(n for _, n in snap.buckets) == 20
    assert 0 < snap.p50_seconds <= snap.p90_seconds <= snap.p99_seconds <= snap.max_seconds
    ordered = sorted(durations)
    # a bucket is at most 1/8 of a power of two wide: the estimate is close above the truth
    assert ordered[9] <= snap.p50_seconds <= ordered[9] * 1.125 + 1e-9


# ---- torn tails ------------------------------------------------------------------------


def _log_with_final_record(tmp_path: Path) -> tuple[Path, Path, int, int]:
    """A synced log plus one final entry record; returns (dir, segment, record start, end)."""
    wal_dir = tmp_path / "wal"
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 6), hard_state=(1, 1, 4))
        wal.sync()
        segment = wal.segment_paths[-1]
        start = data_end(segment)
        wal.append([(1, 7, 0, b"\x01\x00" * 40 + b"\x00" * 17)])  # data ends in zeros on purpose
        wal.sync()
    return wal_dir, segment, start, data_end(segment)


def test_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    pristine, segment, start, end = _log_with_final_record(tmp_path)
    work = tmp_path / "cut"
    for cut in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        with open(work / segment.name, "r+b") as file:
            file.truncate(cut)
        recovery = reopen(work)
        assert recovery.entries == entries(1, 6), cut
        assert recovery.hard_state == (1, 1, 4)
        if cut == start:
            assert recovery.torn_tail is None
        else:
            assert recovery.torn_tail == TornTail(
                str(work / segment.name), start, cut - start, recovery.torn_tail.reason
            )
        # nothing stale beyond the tail, the file is preallocated again, and the index is reusable
        assert (work / segment.name).read_bytes()[start:] == bytes(SEGMENT - start)
        wal, _ = WriteAheadLog.open(work, segment_bytes=SEGMENT)
        with wal:
            wal.append([(2, 7, 1, b"replacement")])
            wal.sync()
        assert reopen(work).entries == entries(1, 6) + [(2, 7, 1, b"replacement")]


def test_zeroed_tail_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    pristine, segment, start, end = _log_with_final_record(tmp_path)
    work = tmp_path / "zeroed"
    for first_zero in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        with open(work / segment.name, "r+b") as file:
            file.seek(first_zero)
            file.write(bytes(end - first_zero))
        recovery = reopen(work)
        assert recovery.entries == entries(1, 6), first_zero
        if first_zero == start:
            assert recovery.torn_tail is None
        else:
            torn = recovery.torn_tail
            assert torn is not None and torn.offset == start
            assert 0 < torn.dropped_bytes <= first_zero - start
        assert (work / segment.name).read_bytes()[start:] == bytes(SEGMENT - start)


def test_cut_inside_a_multi_record_batch_keeps_its_complete_records(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 2))
        wal.sync()
        segment = wal.segment_paths[-1]
        before = data_end(segment)
        wal.append(entries(3, 5), hard_state=(3, 3, 3))  # one write of four records
        wal.sync()
    after = data_end(segment)
    for cut in range(before, after, 7):
        with open(segment, "r+b") as file:
            file.truncate(cut)
        recovery = reopen(wal_dir)
        survivors = recovery.entries
        assert survivors == entries(1, len(survivors))  # a prefix, in order, intact
        assert len(survivors) >= 2
        shutil.rmtree(wal_dir)
        with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
            wal.append(entries(1, 2))
            wal.append(entries(3, 5), hard_state=(3, 3, 3))
            wal.sync()


def test_writer_killed_mid_stream_recovers_every_synced_entry(wal_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pyraftkv.wal import WriteAheadLog
        wal = WriteAheadLog.create({str(wal_dir)!r}, b"m", segment_bytes=1 << 20)
        index = 1
        while True:
            batch = [(1, index + i, 0, bytes([(index + i) % 251]) * 700) for i in range(300)]
            wal.append(batch, hard_state=(1, 1, index))
            wal.sync()
            index += len(batch)
            print(index - 1, flush=True)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    synced = [int(writer.stdout.readline()) for _ in range(15)][-1]
    writer.kill()
    writer.wait()
    wal, recovery = WriteAheadLog.open(wal_dir, segment_bytes=1 << 20)
    wal.close()
    recovered = recovery.entries
    assert len(recovered) >= synced
    assert recovered == [(1, i, 0, bytes([i % 251]) * 700) for i in range(1, len(recovered) + 1)]


# ---- corruption ------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0xFF]))


def test_flipped_byte_anywhere_in_a_middle_record_refuses_to_open(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 3))
        segment = wal.segment_paths[-1]
        start = data_end(segment)
        wal.append(entries(4, 4))
        end = data_end(segment)
        wal.append(entries(5, 8), hard_state=(1, 1, 8))
        wal.sync()
    for offset in range(start, end):
        _flip(segment, offset)
        with pytest.raises(WALCorruptError) as caught:
            WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
        assert caught.value.path == str(segment)
        assert caught.value.offset == start
        assert str(segment) in str(caught.value) and f"offset {start}" in str(caught.value)
        _flip(segment, offset)  # restore
    assert reopen(wal_dir).entries == entries(1, 8)


def test_flipped_byte_in_the_last_complete_record_is_corruption_not_a_torn_tail(
    tmp_path: Path,
) -> None:
    pristine, segment, start, end = _log_with_final_record(tmp_path)
    for offset in range(start, end):
        _flip(pristine / segment.name, offset)
        with pytest.raises(WALCorruptError) as caught:
            WriteAheadLog.open(pristine, segment_bytes=SEGMENT)
        assert caught.value.offset == start
        _flip(pristine / segment.name, offset)


def test_damage_in_an_older_segment_is_corruption(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 80):
            wal.append(entries(i, i))
        wal.sync()
        first, second = wal.segment_paths[:2]
    # zeroing the end of a finished segment looks torn, but only the last segment can be torn
    end = data_end(first)
    with open(first, "r+b") as file:
        file.seek(end - 30)
        file.write(bytes(30))
    with pytest.raises(WALCorruptError) as caught:
        WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
    assert caught.value.path == str(first)


def test_missing_middle_segment_is_corruption(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 120):
            wal.append(entries(i, i))
        wal.sync()
        paths = wal.segment_paths
    assert len(paths) >= 3
    paths[1].unlink()
    with pytest.raises(WALCorruptError, match="missing"):
        WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)


def test_segment_from_another_log_is_corruption(tmp_path: Path) -> None:
    for name, meta in (("a", b"member-a"), ("b", b"member-b")):
        with WriteAheadLog.create(tmp_path / name, meta, segment_bytes=SEGMENT) as wal:
            for i in range(1, 80):
                wal.append(entries(i, i))
            wal.sync()
    second = sorted((tmp_path / "b").glob("*.wal"))[1]
    shutil.copy(second, tmp_path / "a" / second.name)
    with pytest.raises(WALCorruptError):
        WriteAheadLog.open(tmp_path / "a", segment_bytes=SEGMENT)


# ---- truncate_from, snapshots, release_before ----------------------------------------------


def test_truncate_from_then_append_then_recover(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 10), hard_state=(1, 1, 4))
        wal.append_snapshot(2, 1)
        wal.truncate_from(6)
        assert wal.last_index == 5
        wal.append(entries(6, 8, term=2), hard_state=(2, 2, 5))
        wal.sync()
    recovery = reopen(wal_dir)
    assert recovery.entries == entries(3, 5) + entries(6, 8, term=2)
    assert recovery.hard_state == (2, 2, 5)
    assert recovery.snapshot == (2, 1)


def test_truncate_from_alone_survives_a_reopen_with_state_intact(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 10), hard_state=(3, 1, 4))
        wal.append_snapshot(3, 1)
        wal.truncate_from(7)
        wal.sync()
    recovery = reopen(wal_dir)
    assert recovery.entries == entries(4, 6)
    assert recovery.hard_state == (3, 1, 4)
    assert recovery.snapshot == (3, 1)
    wal, _ = WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
    with wal:
        with pytest.raises(ValueError, match="start at index 7"):
            wal.append(entries(8, 8))
        wal.append(entries(7, 7, term=5))
        wal.sync()
    assert reopen(wal_dir).entries == entries(4, 6) + entries(7, 7, term=5)


def test_repeated_truncations_across_segments(wal_dir: Path) -> None:
    expected: dict[int, tuple] = {}
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for term in range(1, 6):
            start = max(1, wal.last_index - 15)
            wal.truncate_from(start)
            batch = entries(start, start + 30, term=term)
            wal.append(batch)
            for entry in batch:
                expected[entry[1]] = entry
            for index in [i for i in expected if i > start + 30]:
                del expected[index]
        wal.sync()
        assert len(wal.segment_paths) > 2
    assert reopen(wal_dir).entries == [expected[i] for i in sorted(expected)]


def test_snapshot_beyond_the_log_restarts_it(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 3))
        wal.append_snapshot(100, 4)  # a follower installed a snapshot from the leader
        wal.append(entries(101, 102, term=4))
        wal.sync()
    recovery = reopen(wal_dir)
    assert recovery.snapshot == (100, 4)
    assert recovery.entries == entries(101, 102, term=4)


def test_release_before_keeps_snapshot_hard_state_and_metadata(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 200):
            wal.append(entries(i, i), hard_state=(1, 1, i - 1) if i == 50 else None)
        wal.sync()
        before = wal.segment_paths
        wal.append_snapshot(150, 1, b"membership at 150" * 20)
        with pytest.raises(ValueError, match="snapshot only covers 150"):
            wal.release_before(152)
        wal.release_before(151)
        after = wal.segment_paths
    assert len(after) < len(before)
    assert all(not p.exists() for p in before if p not in after)
    assert after == sorted(Path(p) for p in wal_dir.glob("*.wal"))
    recovery = reopen(wal_dir)
    assert recovery.metadata == META
    assert recovery.hard_state == (1, 1, 49)
    assert recovery.snapshot == (150, 1)
    assert recovery.snapshot_data == b"membership at 150" * 20
    assert recovery.entries == entries(151, 199)


def test_detached_segments_stay_until_deleted_and_a_restart_between_reads_them(
    wal_dir: Path,
) -> None:
    """detach_before drops the segments from the log at once and leaves their deletion to
    delete_segments (a member does that off its loop): a restart in between still finds a
    contiguous log, and the next release takes them again."""
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 200):
            wal.append(entries(i, i))
        wal.append_snapshot(150, 1)
        before = wal.segment_paths
        detached = wal.detach_before(151)
        assert detached and detached == before[: len(detached)]
        assert wal.segment_paths == before[len(detached) :]
        assert all(path.exists() for path in detached)
        wal.append(entries(200, 210))
        wal.sync()
    wal, recovery = WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
    with wal:  # stopped before the deletion: the detached segments are read again
        assert recovery.snapshot == (150, 1)
        assert recovery.entries == entries(151, 210)
        assert wal.segment_paths[: len(detached)] == detached
        assert wal.detach_before(151) == detached
        delete_segments(detached)
    assert not any(path.exists() for path in detached)
    recovery = reopen(wal_dir)
    assert recovery.snapshot == (150, 1)
    assert recovery.entries == entries(151, 210)


def test_a_stop_midway_through_deleting_segments_leaves_a_log_that_opens(
    wal_dir: Path,
) -> None:
    """delete_segments renames each segment out of the log before it cuts it in steps: a
    stop with one half cut leaves a log that opens, and the next open removes the rest."""
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 200):
            wal.append(entries(i, i))
        wal.append_snapshot(150, 1)
        wal.sync()
        detached = wal.detach_before(151)
    assert len(detached) >= 2
    first, *rest = detached
    cut = first.with_name(first.name + ".released")
    os.rename(first, cut)
    os.truncate(cut, SEGMENT // 3)  # the stop came here
    recovery = reopen(wal_dir)
    assert not cut.exists()
    assert recovery.snapshot == (150, 1)
    assert recovery.entries == entries(151, 199)
    delete_segments(rest)
    assert not any(path.exists() for path in rest)
    assert sorted(p.name for p in wal_dir.iterdir() if p.suffix != ".wal") == ["LOCK"]
    assert reopen(wal_dir).entries == entries(151, 199)


def test_snapshot_marker_survives_in_segment_openings(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 3), hard_state=(4, 2, 3))
        wal.append_snapshot(100, 4, b"conf state")  # a follower installed a snapshot
        marker_segment = wal.segment_paths[0]
        wal.append(entries(101, 150, term=4))  # too big for what is left: a new segment
        for i in range(151, 180):
            wal.append(entries(i, i, term=4))
        wal.release_before(101)
        # the segment that held the SNAPSHOT record is gone; later segments repeat it
        assert not marker_segment.exists()
    recovery = reopen(wal_dir)
    assert recovery.snapshot == (100, 4)
    assert recovery.snapshot_data == b"conf state"
    assert recovery.hard_state == (4, 2, 3)
    assert recovery.entries == entries(101, 179, term=4)


def test_release_before_without_snapshot_deletes_nothing(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 100):
            wal.append(entries(i, i))
        count = len(wal.segment_paths)
        wal.release_before(1)
        assert len(wal.segment_paths) == count
        with pytest.raises(ValueError):
            wal.release_before(50)


# ---- segments ----------------------------------------------------------------------------


def test_rollover_and_a_batch_larger_than_a_segment(wal_dir: Path) -> None:
    big = [(1, i, 0, os.urandom(300)) for i in range(41, 101)]  # about 21 KiB in one batch
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 41):
            wal.append(entries(i, i), hard_state=(1, 1, i))
        rolled = len(wal.segment_paths)
        wal.append(big)
        wal.append(entries(101, 101))
        wal.sync()
        paths = wal.segment_paths
    assert rolled > 1
    assert any(os.path.getsize(p) > SEGMENT for p in paths)
    names = [p.name for p in paths]
    assert names == sorted(names)
    recovery = reopen(wal_dir)
    assert recovery.entries == entries(1, 40) + big + entries(101, 101)
    assert recovery.hard_state == (1, 1, 40)


# ---- the lock ------------------------------------------------------------------------------


def test_second_opener_in_another_process_is_refused(wal_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pyraftkv.wal import WriteAheadLog, WALLockedError
        try:
            WriteAheadLog.open({str(wal_dir)!r})
        except WALLockedError as exc:
            print("locked:", exc)
        else:
            print("opened")
        """
    )
    with WriteAheadLog.create(wal_dir, META):
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert result.stdout.startswith("locked:"), result
        assert f"pid {os.getpid()}" in result.stdout
        with pytest.raises(WALLockedError):
            WriteAheadLog.open(wal_dir)  # a second handle in this process too
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "opened", result


# ---- bad arguments -----------------------------------------------------------------------


BAD_APPENDS = [
    ([(1, 5, 0, b"x")], None, "start at index 4"),
    ([(1, 4, 0, b"x"), (1, 6, 0, b"y")], None, "contiguous"),
    ([(1, 4, 0, b"x"), (1, 4, 0, b"y")], None, "contiguous"),
    ([(-1, 4, 0, b"x")], None, "terms"),
    ([(1 << 64, 4, 0, b"x")], None, "terms"),
    ([(1, 4, 256, b"x")], None, "types"),
    ([(1, 4, -1, b"x")], None, "types"),
    ([(1, 4, 0, "text")], None, "bytes-like"),
    ([(1, 4, 0)], None, "tuples"),
    ([(1, 4, 0, b"x", 9), (1, 5, 0, b"y")], None, "tuples"),
    ([(1, 4.0, 0, b"x")], None, "start at index"),
    ([], (1, 2), "hard_state"),
    ([], (1, -2, 0), "vote"),
    ([(1, 4, 0, b"x")], (1, 1, 1 << 64), "commit"),
]


@pytest.mark.parametrize(("batch", "hard_state", "message"), BAD_APPENDS)
def test_bad_append_is_refused_and_writes_nothing(
    wal_dir: Path, batch: list, hard_state: object, message: str
) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 3), hard_state=(1, 1, 1))
        wal.sync()
        segment = wal.segment_paths[-1]
        image = segment.read_bytes()
        with pytest.raises(ValueError, match=message):
            wal.append(batch, hard_state=hard_state)  # type: ignore[arg-type]
        assert segment.read_bytes() == image
        assert wal.last_index == 3 and wal.hard_state == (1, 1, 1)
        wal.append(entries(4, 4))  # still usable
        wal.sync()
    assert reopen(wal_dir).entries == entries(1, 4)


def test_bad_markers_are_refused(wal_dir: Path) -> None:
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 10))
        wal.append_snapshot(5, 2)
        image = wal.segment_paths[-1].read_bytes()
        for bad in (
            lambda: wal.append_snapshot(4, 2),
            lambda: wal.append_snapshot(6, 1),
            lambda: wal.append_snapshot(-1, 2),
            lambda: wal.truncate_from(5),  # inside the snapshot
            lambda: wal.truncate_from(12),  # beyond the log
            lambda: wal.truncate_from("7"),
            lambda: wal.release_before(-3),
        ):
            with pytest.raises(ValueError):
                bad()
        assert wal.segment_paths[-1].read_bytes() == image


@pytest.mark.parametrize("segment_bytes", [0, 100, 4097, 1 << 41, "4096"])
def test_bad_segment_size(wal_dir: Path, segment_bytes: object) -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        WriteAheadLog.create(wal_dir, META, segment_bytes=segment_bytes)  # type: ignore[arg-type]
    assert not WriteAheadLog.exists(wal_dir)


def test_create_and_open_refuse_the_wrong_directory(tmp_path: Path) -> None:
    with pytest.raises(WALError, match="no write-ahead log"):
        WriteAheadLog.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WALError, match="no segment"):
        WriteAheadLog.open(tmp_path / "empty")
    WriteAheadLog.create(tmp_path / "wal", META).close()
    with pytest.raises(WALError, match="already exists"):
        WriteAheadLog.create(tmp_path / "wal", META)
    assert issubclass(WALError, PyraftkvError)


def test_closed_log_refuses_appends(wal_dir: Path) -> None:
    wal = WriteAheadLog.create(wal_dir, META)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(WALError, match="closed"):
        wal.append(entries(1, 1))
    with pytest.raises(WALError, match="closed"):
        wal.sync()


# ---- lost sectors -------------------------------------------------------------------------

SECTOR = 512


def _log_with_unsynced_batch(wal_dir: Path) -> tuple[Path, int, int]:
    """A synced batch, then one write of many records spanning several sectors; returns the
    segment and where the second write starts and ends."""
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        wal.append(entries(1, 2), hard_state=(1, 1, 2))
        wal.sync()
        segment = wal.segment_paths[-1]
        before = data_end(segment)
        wal.append(entries(3, 14, size=100), hard_state=(1, 1, 14))
        wal.sync()
    return segment, before, data_end(segment)


def test_a_zeroed_sector_inside_an_unsynced_batch_is_a_torn_tail(tmp_path: Path) -> None:
    """A power cut kept later sectors of an unsynced write but not an earlier one: nothing
    from the hole on was acknowledged, so the log opens with the records before the hole."""
    wal_dir = tmp_path / "wal"
    segment, before, after = _log_with_unsynced_batch(wal_dir)
    first = -(-before // SECTOR) * SECTOR
    sectors = range(first - SECTOR if first - before >= 16 else first, after - SECTOR, SECTOR)
    assert len(sectors) >= 2
    pristine = segment.read_bytes()
    for sector in sectors:
        with open(segment, "r+b") as file:
            file.seek(max(sector, before))
            file.write(bytes(sector + SECTOR - max(sector, before)))
        recovery = reopen(wal_dir)
        assert 2 <= len(recovery.entries) < 14, sector
        assert recovery.entries == entries(1, 2) + entries(3, len(recovery.entries), size=100)
        assert recovery.torn_tail is not None
        assert "zeroed sector" in recovery.torn_tail.reason
        assert recovery.torn_tail.offset <= max(sector, before)
        shutil.rmtree(wal_dir)
        segment, _, _ = _log_with_unsynced_batch(wal_dir)
        assert segment.read_bytes() == pristine


def test_a_zeroed_sector_in_an_older_segment_is_corruption(wal_dir: Path) -> None:
    """Segments before the last were synced in full: a hole there lost acknowledged data."""
    with WriteAheadLog.create(wal_dir, META, segment_bytes=SEGMENT) as wal:
        for i in range(1, 40):
            wal.append(entries(i, i, size=100))
        wal.sync()
        segments = wal.segment_paths
    assert len(segments) >= 2
    with open(segments[0], "r+b") as file:
        file.seek(SECTOR * 2)
        file.write(bytes(SECTOR))
    with pytest.raises(WALCorruptError):
        WriteAheadLog.open(wal_dir, segment_bytes=SEGMENT)
