"""The layout of a member's data directory and the identity that guards it.

    <data-dir>/member/identity   who this directory belongs to (cluster, member, name)
    <data-dir>/member/wal/       the Raft process's write-ahead log
    <data-dir>/member/db/        the key-value store (LMDB)
    <data-dir>/member/snap/      snapshot files in transit

A directory made for one member of one cluster refuses to start as anything else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..errors import ConfigError
from ..wal import take_flock

# Held by the member's application process for its whole life (see DataDir.lock).
LOCK_FILE = "LOCK"


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

    def cluster_id(self) -> int | None:
        """The cluster this directory belongs to, if it belongs to one."""
        if not self.exists():
            return None
        with open(self.identity) as f:
            try:
                return int(json.load(f)["cluster_id"], 16)
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"{self.identity} is damaged: {exc}") from None

    def claim(self, cluster_id: int, member_id: int, name: str) -> bool:
        """Check the directory belongs to this member, or make it so; True if it is new."""
        wanted = {"cluster_id": f"{cluster_id:x}", "member_id": f"{member_id:x}", "name": name}
        if self.exists():
            with open(self.identity) as f:
                try:
                    found = json.load(f)
                except ValueError as exc:
                    raise ConfigError(f"{self.identity} is damaged: {exc}") from None
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
        temporary = self.identity + ".tmp"
        with open(temporary, "w") as f:
            json.dump(wanted, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.identity)
        fd = os.open(self.member, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
