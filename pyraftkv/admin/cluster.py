"""How a cluster and its members are named, as etcd names them: http(s)://host:port URLs,
the --initial-cluster list, and member and cluster ids derived from the peer URLs and the
cluster token (so a member keeps its id across restarts, and two clusters made with
different tokens differ)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError


@dataclass(frozen=True)
class Url:
    """A parsed http://host:port or https://host:port URL (https: TLS on that address)."""

    text: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, flag: str) -> Url:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(
                f"{flag}: {text!r} must be an http://host:port or https://host:port URL"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{flag}: {text!r} has an invalid port") from exc
        if not parts.hostname or port is None:
            raise ConfigError(f"{flag}: {text!r} must name a host and a port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{flag}: {text!r} must not have a path or query")
        return cls(f"{parts.scheme}://{parts.netloc}", parts.hostname, port)

    @property
    def hostport(self) -> str:
        """host:port, an IPv6 host in brackets (as in the URL)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.text.startswith("https://")


def parse_urls(text: str, flag: str) -> tuple[Url, ...]:
    """Parse a comma-separated URL list; at least one URL."""
    urls = tuple(Url.parse(u.strip(), flag) for u in text.split(",") if u.strip())
    if not urls:
        raise ConfigError(f"{flag}: at least one URL is required")
    return urls


def member_id(peer_urls: list[str] | tuple[str, ...], cluster_token: str) -> int:
    """etcd's member id: sha1 of the sorted peer URLs and the cluster token, first 8 bytes."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + cluster_token).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0] or 1


def cluster_id(member_ids: list[int]) -> int:
    """etcd's cluster id: sha1 of the sorted member ids (8 bytes big-endian each)."""
    digest = hashlib.sha1(b"".join(struct.pack(">Q", m) for m in sorted(member_ids))).digest()
    return struct.unpack(">Q", digest[:8])[0] or 1


def parse_initial_cluster(text: str) -> dict[str, tuple[str, ...]]:
    """Parse name=url,name=url (a name may repeat for several URLs) into name -> URLs."""
    members: dict[str, list[str]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--initial-cluster: {item!r} is not name=url")
        members.setdefault(name, []).append(Url.parse(url, "--initial-cluster").text)
    if not members:
        raise ConfigError("--initial-cluster: no members given")
    return {name: tuple(urls) for name, urls in members.items()}


@dataclass(frozen=True)
class MemberSpec:
    """One member of the initial cluster."""

    name: str
    id: int
    peer_urls: tuple[str, ...]


@dataclass(frozen=True)
class ClusterPlan:
    """One member's place in a new cluster: its name, its data dir, every member, and the
    ids derived from them."""

    name: str
    data_dir: str
    initial_cluster: tuple[MemberSpec, ...]
    member_id: int
    cluster_id: int


def plan_cluster(
    name: str,
    initial_cluster: str,
    token: str,
    advertise_peer_urls: tuple[Url, ...],
    data_dir: str = "",
) -> ClusterPlan:
    """Validate --name, --initial-cluster (default: this member alone at its advertised peer
    URLs), --initial-cluster-token and --initial-advertise-peer-urls together."""
    if not name:
        raise ConfigError("--name must not be empty")
    initial = initial_cluster or ",".join(f"{name}={u.text}" for u in advertise_peer_urls)
    members = tuple(
        MemberSpec(n, member_id(urls, token), urls)
        for n, urls in parse_initial_cluster(initial).items()
    )
    if len({m.id for m in members}) != len(members):
        raise ConfigError("--initial-cluster: two members share the same peer URLs")
    me = [m for m in members if m.name == name]
    if not me:
        raise ConfigError(
            f"--initial-cluster has no member named {name!r} (--name); "
            f"it lists {', '.join(m.name for m in members)}"
        )
    advertised = sorted(u.text for u in advertise_peer_urls)
    if sorted(me[0].peer_urls) != advertised:
        raise ConfigError(
            f"--initial-cluster gives {name!r} the peer URLs {list(me[0].peer_urls)} "
            f"but --initial-advertise-peer-urls is {advertised}"
        )
    return ClusterPlan(
        name, data_dir or f"{name}.pyraftkv", members, me[0].id, cluster_id([m.id for m in members])
    )
