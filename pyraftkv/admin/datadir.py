"""The layout of a member's data directory and the identity that guards it.

    <data-dir>/member/identity   who this directory belongs to (cluster, member, name)
    <data-dir>/member/wal/       the Raft process's write-ahead log
    <data-dir>/member/db/        the key-value store (LMDB)
    <data-dir>/member/snap/      snapshot files in transit

A directory made for one member of one cluster refuses to start as anything else.

The identity file also records the directory's on-disk format (FORMAT). A pyraftkv opens
any older format, migrating it forward in place; it refuses a newer one, which it cannot
know how to read, with a message naming both formats.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from ..errors import ConfigError
from ..wal import take_flock

log = logging.getLogger("pyraftkv.datadir")

# Held by the member's application process for its whole life (see DataDir.lock).
LOCK_FILE = "LOCK"

# The on-disk format this pyraftkv writes. 1: the layout above with no format recorded.
# 2: the format recorded in the identity; the store may hold replicated alarms (a format-1
# store has none, which reads as "no alarm raised": migrating only records the format).
FORMAT = 2


def wal_metadata(cluster_id: int, member_id: int) -> bytes:
    """What a member's WAL records as its owner: a WAL opened by anyone else is refused."""
    return json.dumps({"cluster_id": f"{cluster_id:x}", "member_id": f"{member_id:x}"}).encode()


@dataclass(frozen=True)
class DataDir:
    """Paths inside one member's data directory."""

    root: str

    @property
    def member(self) -> str:
        return os.path.join(self.root, "member")

    @property
    def identity(self) -> str:
        return os.path.join(self.member, "identity")

    @property
    def wal(self) -> str:
        return os.path.join(self.member, "wal")

    @property
    def db(self) -> str:
        return os.path.join(self.member, "db")

    @property
    def snap(self) -> str:
        return os.path.join(self.member, "snap")

    def lock(self) -> int:
        """Hold this data dir for this process (released when it exits), checked before a
        member opens anything: a second member on the same directory is refused at once,
        naming the holder. A non-empty directory that is not a data dir is left untouched."""
        if os.path.isdir(self.root) and os.listdir(self.root) and not os.path.isdir(self.member):
            raise ConfigError(
                f"data dir {self.root!r} is not empty and is not a pyraftkv data dir "
                f"(it holds {', '.join(sorted(os.listdir(self.root))[:5])})"
            )
        os.makedirs(self.member, exist_ok=True)
        try:
            return take_flock(os.path.join(self.member, LOCK_FILE))
        except BlockingIOError as exc:
            raise ConfigError(
                f"data dir {self.root!r} is in use by another member ({exc})"
            ) from None

    def exists(self) -> bool:
        return os.path.exists(self.identity)

    def _read_identity(self) -> dict:
        """The identity file's fields; refuses a damaged file or a newer on-disk format."""
        with open(self.identity) as f:
            try:
                found = json.load(f)
                found_format = int(found.get("format", 1))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{self.identity} is damaged: {exc}") from None
        if found_format > FORMAT:
            raise ConfigError(
                f"data dir {self.root!r} has on-disk format {found_format}, written by a newer "
                f"pyraftkv; this version reads formats up to {FORMAT} (run a newer pyraftkv "
                f"on it, or restore a backup into a new data dir)"
            )
        return found

    def format(self) -> int:
        """The on-disk format of this directory (FORMAT for one not made yet)."""
        return int(self._read_identity().get("format", 1)) if self.exists() else FORMAT

    def cluster_id(self) -> int | None:
        """The cluster this directory belongs to, if it belongs to one."""
        if not self.exists():
            return None
        try:
            return int(self._read_identity()["cluster_id"], 16)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{self.identity} is damaged: {exc}") from None

    def identity_ids(self) -> tuple[int, int, str] | None:
        """(cluster id, member id, name) this directory belongs to, if it belongs to one."""
        if not self.exists():
            return None
        found = self._read_identity()
        try:
            return int(found["cluster_id"], 16), int(found["member_id"], 16), found["name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.identity} is damaged: {exc}") from None

    def claim(self, cluster_id: int, member_id: int, name: str) -> bool:
        """Check the directory belongs to this member, or make it so; True if it is new.
        An older on-disk format is migrated to FORMAT."""
        wanted = {
            "cluster_id": f"{cluster_id:x}",
            "member_id": f"{member_id:x}",
            "name": name,
            "format": FORMAT,
        }
        if self.exists():
            found = self._read_identity()
            if found.get("cluster_id") != wanted["cluster_id"]:
                raise ConfigError(
                    f"data dir {self.root!r} belongs to cluster {found.get('cluster_id')}, "
                    f"not {wanted['cluster_id']} (check --initial-cluster and "
                    f"--initial-cluster-token, or use another --data-dir)"
                )
            if found.get("member_id") != wanted["member_id"]:
                raise ConfigError(
                    f"data dir {self.root!r} belongs to member {found.get('member_id')} "
                    f"({found.get('name')!r}), not {wanted['member_id']} ({name!r}); "
                    f"check --name and --initial-advertise-peer-urls"
                )
            if found.get("format", 1) < FORMAT:
                self._write_identity({**found, "format": FORMAT})
                log.info(
                    "data dir %s migrated from on-disk format %d to %d",
                    self.root,
                    found.get("format", 1),
                    FORMAT,
                )
            return False
        if os.path.isdir(self.root) and os.listdir(self.root):
            entries = sorted(os.listdir(self.root))
            if entries != ["member"] or set(os.listdir(self.member)) - {LOCK_FILE}:
                raise ConfigError(
                    f"data dir {self.root!r} is not empty and is not a pyraftkv data dir "
                    f"(it holds {', '.join(entries[:5])})"
                )
        for path in (self.member, self.wal, self.db, self.snap):
            os.makedirs(path, exist_ok=True)
        self._write_identity(wanted)
        return True

    def _write_identity(self, fields: dict) -> None:
        """Replace the identity file atomically and durably."""
        temporary = self.identity + ".tmp"
        with open(temporary, "w") as f:
            json.dump(fields, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.identity)
        fd = os.open(self.member, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
