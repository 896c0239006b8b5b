"""Network faults between members on loopback, without root, for tests: a rules file the
Raft process consults before handing frames to a peer.

Switched on only by the environment at start: ``PYRAFTKV_PEER_FAULTS=<path>`` names a JSON
file (written by the test, replaced atomically) of what this member's outgoing peer
messages suffer, per receiving member id (decimal):

    {"drop": [id, ...], "delay_ms": {"id": ms, ...}, "jitter_ms": ms}

``drop`` loses every message to those members (a link cut one way; cut both ways by
writing both members' files; partitions and bridges are sets of such cuts). ``delay_ms``
holds them back that long; ``jitter_ms`` adds a random extra delay up to that much to each
batch, so batches can arrive out of order. A missing or empty file means no faults. The
file is looked at before every send, so a rule holds from the next send on.

Snapshot streams (their own connections) obey the same rules at both ends: before the
connection and before every chunk the sender checks its rules for the receiver, and the
receiver its rules for the sender (a stream needs both directions, as TCP does), so a cut
either way breaks the stream (LinkCut) and a delay slows each chunk. When the variable is
unset, FAULTS is None and the transport skips all of this with one constant check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable

ENV = "PYRAFTKV_PEER_FAULTS"

log = logging.getLogger("pyraftkv.peers")


class LinkCut(ConnectionError):
    """A snapshot stream ended because the rules cut its link."""


class PeerFaults:
    """The rules of one member, reloaded when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.drop: frozenset[int] = frozenset()
        self.delay_s: dict[int, float] = {}
        self.jitter_s = 0.0
        self._stamp: tuple[int, int] | None = None

    def _refresh(self) -> None:
        # One stat per send (tests only): a rule takes effect from the very next send, so
        # a test that cuts a link and then acts knows the cut is in place.
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        rules = {}
        if stamp is not None:
            try:
                with open(self.path) as f:
                    rules = json.load(f) or {}
            except (OSError, ValueError) as exc:
                log.warning("peer faults file %s unreadable, ignored: %s", self.path, exc)
        self.drop = frozenset(int(i) for i in rules.get("drop", ()))
        self.delay_s = {int(i): ms / 1000 for i, ms in rules.get("delay_ms", {}).items()}
        self.jitter_s = rules.get("jitter_ms", 0) / 1000
        log.info("peer faults now: %s", rules)

    def intercept(
        self, peer_id: int, frames: list[bytes], deliver: Callable[[int, list[bytes]], None]
    ) -> bool:
        """True when the frames were dropped or held back (``deliver`` sends them later)."""
        self._refresh()
        if peer_id in self.drop:
            return True
        delay = self.delay_s.get(peer_id, 0.0)
        if self.jitter_s:
            delay += random.random() * self.jitter_s
        if delay <= 0:
            return False
        asyncio.get_running_loop().call_later(delay, deliver, peer_id, frames)
        return True

    async def on_stream(self, peer_id: int) -> None:
        """Before a snapshot stream to or from ``peer_id`` connects and before each of its
        chunks: LinkCut if this member's rules cut the link, else wait the link's delay."""
        self._refresh()
        if peer_id in self.drop:
            raise LinkCut(f"the link to member {peer_id:x} is cut (peer faults)")
        delay = self.delay_s.get(peer_id, 0.0) + random.random() * self.jitter_s
        if delay > 0:
            await asyncio.sleep(delay)


FAULTS = PeerFaults(os.environ[ENV]) if os.environ.get(ENV) else None
