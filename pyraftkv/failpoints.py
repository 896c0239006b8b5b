"""Failpoints, as etcd's gofail: named places in both processes of a member where a test
can make it crash, pause, sleep or fail, to check what survives.

Switched on only by the environment at start:

    PYRAFTKV_FAILPOINTS="raftBeforeFsync=crash;appBeforeReply=20*off->sleep(50)"

or switched on and off while the member runs (as gofail's HTTP endpoint does), through a
file named at start:

    PYRAFTKV_FAILPOINTS_FILE=/path/to/failpoints   # holds a spec as above

Each hit looks at the file (one stat); when it was written, removed or replaced since, its
spec replaces every point's chain (counts start again; an empty or missing file turns
every point off; until the file first appears, PYRAFTKV_FAILPOINTS applies). A bad spec
in the file is reported on stderr and changes nothing.

Each point takes a chain of terms separated by ``->``; a term is
``[<percent>%][<count>*]<action>[(<arg>)]`` and applies ``count`` times (forever if no
count; the last term of a chain is kept), each hit with ``percent`` probability. Actions:

- ``off``: nothing (with a count: let the first hits pass, e.g. ``100*off->crash``);
- ``crash``: ``os._exit(CRASH_EXIT_CODE)`` at once, no cleanup, nothing flushed;
- ``pause``: SIGSTOP the whole process (a test resumes it with SIGCONT);
- ``sleep(ms)``: block the calling thread that long;
- ``error``: raise FailpointError (an OSError) where the point is.

When both variables are unset, ``ENABLED`` is False and every call site is guarded by
``if ENABLED:``, a module-constant check: nothing else runs. Names are checked against
POINTS, so a typo fails loudly (at start) instead of never firing.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass

ENV = "PYRAFTKV_FAILPOINTS"
FILE_ENV = "PYRAFTKV_FAILPOINTS_FILE"
CRASH_EXIT_CODE = 86

# Every failpoint, with where it is. Raft process (r) and application process (a).
POINTS = {
    "raftBeforeWalAppend": "r: WAL writer thread, before a group's records are appended",
    "raftAfterWalAppend": "r: after the append, before its fdatasync",
    "raftBeforeFsync": "r: before the WAL fdatasync",
    "raftAfterFsync": "r: after the fdatasync, before the Ready is advanced",
    "raftAfterSend": "r: after a Ready's messages were handed to the peer transport",
    "raftBeforeSnapshotMarker": "r: a received snapshot installed, its WAL marker not written",
    "walSegmentRollover": "r: the next WAL segment written and synced but not yet renamed",
    "raftSnapshotSendChunk": "r: leader, between chunks of a snapshot being sent",
    "raftSnapshotReceiveChunk": "r: follower, between chunks of a snapshot being received",
    "appAfterSnapshotInstall": "a: store replaced by a received snapshot, Raft not yet told",
    "appApplyMidBatch": "a: between two entries of one apply batch (store transaction open)",
    "appBeforeApplyEntry": "a: an entry's requests about to be applied (their time counted)",
    "appAnsweredBeforeApply": "a: an entry of one put answered, the put not yet applied",
    "appBeforeBackendCommit": "a: an apply batch's replies written, its store transaction open",
    "appBeforeStoreCopy": "a: copy thread, a backup or catch-up copy of the store not begun",
    "appBeforeReply": "a: replies ready, before they are written to the client's socket",
}


class FailpointError(OSError):
    """Raised by a failpoint set to ``error``."""


@dataclass
class _Term:
    action: str
    arg: int
    count: int | None  # None: forever
    percent: float


_TERM = re.compile(
    r"^(?:(\d+(?:\.\d+)?)%)?(?:(\d+)\*)?(off|crash|pause|sleep|error)(?:\((\d+)\))?$"
)


def parse(spec: str) -> dict[str, list[_Term]]:
    """``name=terms;name=terms`` into each point's chain; ValueError says what is wrong."""
    points: dict[str, list[_Term]] = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        name, sep, chain = item.partition("=")
        name = name.strip()
        if not sep or name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        terms = []
        for text in chain.split("->"):
            match = _TERM.match(text.strip())
            if match is None:
                raise ValueError(f"{ENV}: bad term {text!r} for {name}")
            percent, count, action, arg = match.groups()
            if action == "sleep" and arg is None:
                raise ValueError(f"{ENV}: sleep needs milliseconds, as sleep(100)")
            terms.append(
                _Term(action, int(arg or 0), int(count) if count else None, float(percent or 100))
            )
        points[name] = terms
    return points


_SPEC = os.environ.get(ENV, "")
_CHAINS = parse(_SPEC)
_FILE = os.environ.get(FILE_ENV, "")
_file_stamp: tuple[int, int, int] | None = None  # of the spec in force; None: no file yet
ENABLED = bool(_CHAINS) or bool(_FILE)
_lock = threading.Lock()


def _reload() -> None:
    """Take the file's spec if the file changed since the last look (under _lock)."""
    global _CHAINS, _file_stamp
    try:
        stat = os.stat(_FILE)
    except FileNotFoundError:
        stamp = (0, 0, 0)
    else:
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
    if stamp == _file_stamp or (_file_stamp is None and stamp == (0, 0, 0)):
        return
    _file_stamp = stamp
    try:
        with open(_FILE) as f:
            spec = f.read()
    except FileNotFoundError:
        spec = ""
    except OSError as exc:
        print(f"{FILE_ENV}: {exc}; failpoints unchanged", file=sys.stderr, flush=True)
        return
    try:
        _CHAINS = parse(spec)
    except ValueError as exc:
        print(f"{FILE_ENV} {_FILE}: {exc}; failpoints unchanged", file=sys.stderr, flush=True)
        return
    print(f"failpoints now: {spec.strip() or 'none'}", file=sys.stderr, flush=True)


def hit(name: str) -> None:
    """Run the failpoint ``name``'s current term (call only under ``if ENABLED:``)."""
    assert name in POINTS, name
    with _lock:
        if _FILE:
            _reload()
        chain = _CHAINS.get(name)
        if not chain:
            return
        term = chain[0]
        if term.count is not None:
            term.count -= 1
            if term.count <= 0 and len(chain) > 1:
                chain.pop(0)
            elif term.count < 0:
                return  # a counted last term is used up
        if term.percent < 100 and random.random() * 100 >= term.percent:
            return
    if term.action == "off":
        return
    print(f"failpoint {name}: {term.action}", file=sys.stderr, flush=True)
    if term.action == "crash":
        os._exit(CRASH_EXIT_CODE)
    if term.action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif term.action == "sleep":
        time.sleep(term.arg / 1000)
    elif term.action == "error":
        raise FailpointError(f"failpoint {name}")
