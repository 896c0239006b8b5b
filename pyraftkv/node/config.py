"""Server configuration: etcd-named flags, PYRAFTKV_* environment variables, validation.

Each flag may also come from the environment variable PYRAFTKV_<FLAG> (upper case, dashes
as underscores); a flag on the command line wins over the environment. Member and cluster
ids are derived from the peer URLs and the cluster token the way etcd derives them, so a
member keeps its id across restarts and two clusters made with different tokens differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass, field

from ..admin.cluster import (
    MemberSpec,
    Url,
    cluster_id,
    member_id,
    parse_initial_cluster,
    parse_urls,
    plan_cluster,
)
from ..errors import ConfigError
from .tls import CIPHER_SUITES, TlsError, TlsSettings

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, flag: str) -> float:
    """Seconds in a duration written as etcd's flags take it: "10m", "500ms", "1m30s"."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ConfigError(f"{flag}: {text!r} is not a duration (e.g. 10m, 30s, 500ms)")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"{flag}: must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start, validated."""

    name: str
    data_dir: str
    listen_client_urls: tuple[Url, ...]
    advertise_client_urls: tuple[Url, ...]
    listen_peer_urls: tuple[Url, ...]
    initial_advertise_peer_urls: tuple[Url, ...]
    initial_cluster: tuple[MemberSpec, ...]
    initial_cluster_state: str
    initial_cluster_token: str
    heartbeat_interval_ms: int
    election_timeout_ms: int
    snapshot_count: int
    max_request_bytes: int
    quota_backend_bytes: int
    log_level: str
    client_idle_timeout_s: float  # 0: never
    logger: str
    log_outputs: str
    watch_progress_notify_interval_s: float
    listen_metrics_urls: tuple[Url, ...]
    auto_compaction_mode: str
    auto_compaction_retention: float  # seconds (periodic) or revisions; 0: off
    cluster_id: int = field(init=False)
    member_id: int = field(init=False)
    client_tls: TlsSettings = TlsSettings()
    peer_tls: TlsSettings = TlsSettings()
    auth_token: str = "simple"
    auth_token_ttl_s: int = 300
    bcrypt_cost: int = 10
    write_trace_interval_ms: float = 10.0
    initial_corrupt_check: bool = False
    corrupt_check_interval_s: float = 0.0  # 0: no periodic check
    strict_reconfig_check: bool = True
    force_new_cluster: bool = False
    initial_election_tick_advance: bool = True
    single_process: bool = False
    cors: frozenset[str] | None = None  # None: any origin
    host_whitelist: frozenset[str] | None = None  # None: any host

    def __post_init__(self) -> None:
        me = next((m for m in self.initial_cluster if m.name == self.name), None)
        if me is None:
            raise ConfigError(f"--initial-cluster has no member named {self.name!r} (--name)")
        object.__setattr__(self, "member_id", me.id)
        object.__setattr__(self, "cluster_id", cluster_id([m.id for m in self.initial_cluster]))

    def joining(self, cluster_id: int) -> NodeConfig:
        """This configuration for a member joining the running cluster ``cluster_id``."""
        copy = dataclasses.replace(self)
        object.__setattr__(copy, "cluster_id", cluster_id)
        return copy

    def moved(self, member_id: int, cluster_id: int) -> NodeConfig:
        """This configuration for a member restarting at the peer URLs a MemberUpdate gave
        it: its flags now derive another id, but it stays ``member_id`` of ``cluster_id``."""
        copy = dataclasses.replace(self)
        initial = tuple(
            dataclasses.replace(m, id=member_id) if m.name == self.name else m
            for m in self.initial_cluster
        )
        object.__setattr__(copy, "initial_cluster", initial)
        object.__setattr__(copy, "member_id", member_id)
        object.__setattr__(copy, "cluster_id", cluster_id)
        return copy

    @property
    def election_ticks(self) -> int:
        return max(2, self.election_timeout_ms // self.heartbeat_interval_ms)

    def member(self, member_id: int) -> MemberSpec | None:
        return next((m for m in self.initial_cluster if m.id == member_id), None)


# flag name, kind (str, int, float, bool or parse_duration), default, help
_FLAGS: tuple[tuple[str, object, object, str], ...] = (
    ("name", str, "default", "Human-readable name of this member."),
    (
        "data-dir",
        str,
        None,
        "Directory for the WAL, snapshots and the key-value database (default: ./<name>.pyraftkv).",
    ),
    (
        "listen-client-urls",
        str,
        "http://127.0.0.1:2379",
        "Comma-separated URLs to listen on for client traffic.",
    ),
    (
        "advertise-client-urls",
        str,
        "http://127.0.0.1:2379",
        "This member's client URLs as told to the rest of the cluster and to clients.",
    ),
    (
        "listen-peer-urls",
        str,
        "http://127.0.0.1:2380",
        "Comma-separated URLs to listen on for traffic from the other members.",
    ),
    (
        "initial-advertise-peer-urls",
        str,
        "http://127.0.0.1:2380",
        "This member's peer URLs as told to the rest of the cluster.",
    ),
    (
        "initial-cluster",
        str,
        None,
        "Initial cluster configuration for bootstrapping, "
        "name=peer-url,... (default: <name>=<initial-advertise-peer-urls>).",
    ),
    (
        "initial-cluster-state",
        str,
        "new",
        "'new' when every member starts together; "
        "'existing' to join a cluster that already runs (after a member add).",
    ),
    (
        "initial-cluster-token",
        str,
        "pyraftkv-cluster",
        "Token that makes this cluster's ids unique; use a different one per cluster.",
    ),
    ("heartbeat-interval", int, 100, "Time in milliseconds of a heartbeat interval."),
    ("election-timeout", int, 1000, "Time in milliseconds for an election to time out."),
    (
        "snapshot-count",
        int,
        100000,
        "Number of committed entries that triggers a snapshot (and WAL release); 64 MiB "
        "of applied log also does.",
    ),
    ("max-request-bytes", int, 1536 * 1024, "Maximum client request size in bytes."),
    (
        "cors",
        str,
        "*",
        "Comma-separated origins (scheme://host:port) whose cross-origin HTTP requests get "
        "CORS headers; '*' means any.",
    ),
    (
        "host-whitelist",
        str,
        "*",
        "Comma-separated host names that HTTP requests to a plaintext client port may name "
        "in their Host header (against DNS rebinding); '*' means any.",
    ),
    (
        "quota-backend-bytes",
        int,
        8 << 30,
        "Bytes of data the store may hold; above it, writes that add data are refused "
        "('database space exceeded') until deletes and compaction free space.",
    ),
    ("log-level", str, "info", "debug, info, warning or error."),
    (
        "logger",
        str,
        "capnslog",
        "'capnslog': plain log lines; 'zap': one JSON object per line (level, ts, caller, "
        "msg and the event's fields, as etcd's zap logger).",
    ),
    (
        "log-outputs",
        str,
        "stderr",
        "Comma-separated: stderr, stdout, or file paths (both processes append to them).",
    ),
    (
        "listen-metrics-urls",
        str,
        None,
        "Comma-separated URLs to serve /metrics (Prometheus text) and /health on over HTTP "
        "(default: none).",
    ),
    (
        "auto-compaction-retention",
        str,
        "0",
        "History to keep: a duration such as 30m or 72h (a plain number means hours) in "
        "periodic mode, a number of revisions in revision mode; 0 turns auto-compaction off.",
    ),
    (
        "auto-compaction-mode",
        str,
        "periodic",
        "How --auto-compaction-retention is read: 'periodic' or 'revision'.",
    ),
    ("cert-file", str, None, "Path to the client server TLS certificate file."),
    ("key-file", str, None, "Path to the client server TLS key file."),
    (
        "trusted-ca-file",
        str,
        None,
        "Path to the CA certificate file that client certificates must be signed by.",
    ),
    (
        "client-cert-auth",
        bool,
        False,
        "Require a client certificate signed by --trusted-ca-file on the client port; with "
        "auth on, its common name is the user name.",
    ),
    ("auto-tls", bool, False, "Client TLS with a generated self-signed certificate."),
    (
        "cipher-suites",
        str,
        None,
        "Comma-separated TLS 1.2 cipher suites (Go names, e.g. "
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) for client and peer TLS "
        "(default: the ssl library's).",
    ),
    ("peer-cert-file", str, None, "Path to the peer server TLS certificate file."),
    ("peer-key-file", str, None, "Path to the peer server TLS key file."),
    (
        "peer-trusted-ca-file",
        str,
        None,
        "Path to the CA certificate file that peer certificates must be signed by.",
    ),
    (
        "peer-client-cert-auth",
        bool,
        False,
        "Refuse peer connections without a certificate signed by --peer-trusted-ca-file.",
    ),
    ("peer-auto-tls", bool, False, "Peer TLS with a generated self-signed certificate."),
    (
        "peer-cert-allowed-cn",
        str,
        None,
        "Accept peer connections only from certificates with this common name.",
    ),
    (
        "auth-token",
        str,
        "simple",
        "Auth token kind: 'simple', or 'jwt,pub-key=<file>,priv-key=<file>,"
        "sign-method=RS256|ES256|...[,ttl=5m]'.",
    ),
    ("auth-token-ttl", int, 300, "Seconds a simple token stays valid after its last use."),
    ("bcrypt-cost", int, 10, "bcrypt cost of hashing passwords (4 to 31)."),
    (
        "experimental-watch-progress-notify-interval",
        parse_duration,
        "10m",
        "How often watchers that asked for progress notifications (and got no events "
        "meanwhile) are told the current revision.",
    ),
    (
        "force-new-cluster",
        bool,
        False,
        "Start this member from its data as a single-member cluster, removing every other "
        "member (recovery when a quorum is lost for good).",
    ),
    (
        "initial-election-tick-advance",
        bool,
        True,
        "At start, once a peer is connected, skip all but two ticks of the first election "
        "timeout, so a cluster restarting together elects its leader sooner.",
    ),
    (
        "single-process",
        bool,
        False,
        "Run the member's Raft side on the application's event loop: one process instead "
        "of two. One writer waiting for each answer gets it sooner; a busy leader has one "
        "core for both sides instead of two.",
    ),
    (
        "strict-reconfig-check",
        bool,
        True,
        "Refuse a member add, remove or promote that would leave the cluster without a "
        "quorum of started members.",
    ),
    (
        "experimental-initial-corrupt-check",
        bool,
        False,
        "Before serving, compare this member's HashKV with its peers' and refuse to start on "
        "a mismatch.",
    ),
    (
        "experimental-corrupt-check-time",
        str,
        "0s",
        "How often the leader compares the members' HashKV at one revision (0s: never); a "
        "member whose hash differs gets the CORRUPT alarm.",
    ),
    (
        "client-idle-timeout",
        str,
        "10m",
        "Close a client connection that had nothing in flight and sent nothing for this long "
        "(a duration; 0: never). Connections holding watches, keep-alives, elections or "
        "waiting calls are never idle.",
    ),
    (
        "write-trace-interval",
        float,
        10.0,
        "Milliseconds between two traced proposal batches (the per-write stage histograms "
        "pyraftkv_write_stage_duration_seconds on /metrics); 0 turns the trace off.",
    ),
)


def _env_name(flag: str) -> str:
    return "PYRAFTKV_" + flag.upper().replace("-", "_")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Declare the server flags on ``parser``."""
    parser.add_argument(
        "--config-file",
        metavar="FILE",
        default=None,
        help="Path to a configuration file in etcd's YAML format. When one is given, the "
        f"other flags and environment variables are ignored, as with etcd [env "
        f"{_env_name('config-file')}].",
    )
    for flag, kind, default, text in _FLAGS:
        shown = f" (default: {default})" if default is not None and "default:" not in text else ""
        # etcd's boolean flags: "--client-cert-auth" alone, or "--client-cert-auth=false".
        boolean = {"nargs": "?", "const": "true"} if kind is bool else {}
        parser.add_argument(
            f"--{flag}",
            metavar=flag.split("-")[-1].upper(),
            default=None,
            help=f"{text}{shown} [env {_env_name(flag)}]",
            **boolean,
        )


MAX_REQUEST_BYTES_LIMIT = 1 << 30


def config_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> NodeConfig:
    """Merge flags over PYRAFTKV_* environment over defaults; validate everything. With a
    config file (--config-file or its environment variable), the file alone gives the
    settings, over the defaults, as with etcd."""
    environ = os.environ if environ is None else environ
    config_file = getattr(args, "config_file", None) or environ.get(_env_name("config-file"))
    from_file = None
    if config_file:
        from .config_file import read_config_file

        from_file = read_config_file(config_file, {f: k for f, k, _d, _t in _FLAGS})
    raw: dict[str, object] = {}
    for flag, kind, default, _text in _FLAGS:
        if from_file is not None:
            value, source = from_file.get(flag), f"config file: {flag}"
        else:
            value = getattr(args, flag.replace("-", "_"))
            source = f"--{flag}"
            if value is None and _env_name(flag) in environ:
                value, source = environ[_env_name(flag)], _env_name(flag)
        if value is None:
            value = default
            if value is None:
                raw[flag] = None
                continue
        if kind is int:
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{source}: {value!r} is not an integer") from None
            if value <= 0:
                raise ConfigError(f"{source}: must be positive, got {value}")
        elif kind is float:
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{source}: {value!r} is not a number") from None
            if not value >= 0:  # NaN too
                raise ConfigError(f"{source}: must be 0 or more, got {value}")
        elif kind is bool and not isinstance(value, bool):
            value = _boolean(value, source)
        elif kind is parse_duration:
            value = parse_duration(value, source)
        raw[flag] = value
    return _build(raw)


def _boolean(text: str, source: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ConfigError(f"{source}: {text!r} is not true or false")
    return lowered in ("true", "1")


def _tls(raw: dict, prefix: str, urls: tuple[Url, ...], url_flag: str) -> TlsSettings:
    """One listener family's TLS flags, checked: files load, https URLs have a certificate."""
    flag = f"--{prefix}"
    suites = tuple(s.strip() for s in (raw["cipher-suites"] or "").split(",") if s.strip())
    unknown = [s for s in suites if s not in CIPHER_SUITES]
    if unknown:
        raise ConfigError(f"--cipher-suites: unknown cipher suite {unknown[0]!r}")
    settings = TlsSettings(
        cert_file=raw[f"{prefix}cert-file"] or "",
        key_file=raw[f"{prefix}key-file"] or "",
        trusted_ca_file=raw[f"{prefix}trusted-ca-file"] or "",
        client_cert_auth=raw[f"{prefix}client-cert-auth"],
        auto_tls=raw[f"{prefix}auto-tls"],
        allowed_cn=raw.get(f"{prefix}cert-allowed-cn") or "",
        cipher_suites=suites,
    )
    if bool(settings.cert_file) != bool(settings.key_file):
        raise ConfigError(f"{flag}cert-file and {flag}key-file must be given together")
    if settings.client_cert_auth and not settings.trusted_ca_file:
        raise ConfigError(f"{flag}client-cert-auth needs {flag}trusted-ca-file")
    if any(u.tls for u in urls) and not (settings.has_cert or settings.auto_tls):
        raise ConfigError(
            f"{url_flag} has an https URL: give {flag}cert-file and {flag}key-file "
            f"(or {flag}auto-tls)"
        )
    try:
        if settings.has_cert:
            settings.server_context()
        settings.client_context()
    except TlsError as exc:
        raise ConfigError(f"{flag}cert-file/{flag}key-file/{flag}trusted-ca-file: {exc}") from exc
    return settings


def _build(raw: dict) -> NodeConfig:
    name = raw["name"]
    state = raw["initial-cluster-state"]
    if state not in ("new", "existing"):
        raise ConfigError(f"--initial-cluster-state must be 'new' or 'existing', not {state!r}")
    mode, retention = raw["auto-compaction-mode"], raw["auto-compaction-retention"]
    if mode not in ("periodic", "revision"):
        raise ConfigError(f"--auto-compaction-mode must be 'periodic' or 'revision', not {mode!r}")
    level = raw["log-level"]
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level must be debug, info, warning or error, not {level!r}")
    if raw["max-request-bytes"] > MAX_REQUEST_BYTES_LIMIT:
        # The client port tells the native protocol from HTTP by a frame's first length
        # byte, which must stay below 'A' (protocol/sniff.py).
        raise ConfigError(f"--max-request-bytes must be at most {MAX_REQUEST_BYTES_LIMIT} (1 GiB)")
    heartbeat, election = raw["heartbeat-interval"], raw["election-timeout"]
    if election < 5 * heartbeat:
        raise ConfigError(
            f"--election-timeout ({election} ms) must be at least 5 times "
            f"--heartbeat-interval ({heartbeat} ms)"
        )
    advertise_peers = parse_urls(
        raw["initial-advertise-peer-urls"], "--initial-advertise-peer-urls"
    )
    token = raw["initial-cluster-token"]
    plan = plan_cluster(name, raw["initial-cluster"], token, advertise_peers, raw["data-dir"])
    listen_client_urls = parse_urls(raw["listen-client-urls"], "--listen-client-urls")
    listen_peer_urls = parse_urls(raw["listen-peer-urls"], "--listen-peer-urls")
    metrics_urls = (
        parse_urls(raw["listen-metrics-urls"], "--listen-metrics-urls")
        if raw["listen-metrics-urls"]
        else ()
    )
    return NodeConfig(
        name=name,
        data_dir=plan.data_dir,
        listen_client_urls=listen_client_urls,
        advertise_client_urls=parse_urls(raw["advertise-client-urls"], "--advertise-client-urls"),
        listen_peer_urls=listen_peer_urls,
        initial_advertise_peer_urls=advertise_peers,
        initial_cluster=plan.initial_cluster,
        initial_cluster_state=state,
        initial_cluster_token=token,
        heartbeat_interval_ms=heartbeat,
        election_timeout_ms=election,
        snapshot_count=raw["snapshot-count"],
        max_request_bytes=raw["max-request-bytes"],
        quota_backend_bytes=raw["quota-backend-bytes"],
        log_level=level,
        client_idle_timeout_s=_optional_duration(
            raw["client-idle-timeout"], "--client-idle-timeout"
        ),
        logger=_logger(raw["logger"]),
        log_outputs=_log_outputs(raw["log-outputs"]),
        watch_progress_notify_interval_s=raw["experimental-watch-progress-notify-interval"],
        auto_compaction_mode=mode,
        auto_compaction_retention=_retention(mode, retention),
        listen_metrics_urls=metrics_urls,
        # https metrics URLs use the client certificate, as etcd's do
        client_tls=_tls(
            raw, "", listen_client_urls + metrics_urls, "--listen-client-urls/--listen-metrics-urls"
        ),
        peer_tls=_tls(raw, "peer-", listen_peer_urls, "--listen-peer-urls"),
        auth_token=_auth_token(raw["auth-token"], raw["auth-token-ttl"]),
        auth_token_ttl_s=raw["auth-token-ttl"],
        bcrypt_cost=_bcrypt_cost(raw["bcrypt-cost"]),
        write_trace_interval_ms=raw["write-trace-interval"],
        initial_corrupt_check=raw["experimental-initial-corrupt-check"],
        strict_reconfig_check=raw["strict-reconfig-check"],
        force_new_cluster=raw["force-new-cluster"],
        initial_election_tick_advance=raw["initial-election-tick-advance"],
        single_process=raw["single-process"],
        corrupt_check_interval_s=_optional_duration(
            raw["experimental-corrupt-check-time"], "--experimental-corrupt-check-time"
        ),
        cors=_cors(raw["cors"]),
        host_whitelist=_any_or_set(raw["host-whitelist"]),
    )


def _any_or_set(text: str) -> frozenset[str] | None:
    """A comma-separated list: None when it is empty or holds '*' (anything goes)."""
    items = frozenset(item.strip() for item in text.split(",") if item.strip())
    return None if not items or "*" in items else items


def _cors(text: str) -> frozenset[str] | None:
    origins = _any_or_set(text)
    for origin in origins or ():
        scheme, sep, rest = origin.partition("://")
        host, colon, port = rest.rpartition(":")
        if scheme not in ("http", "https") or not (sep and colon and host and port.isdigit()):
            raise ConfigError(f"--cors: {origin!r} is not an origin of the form scheme://host:port")
    return origins


def _optional_duration(text: str, flag: str) -> float:
    return 0.0 if text.strip() in ("0", "0s") else parse_duration(text, flag)


def _logger(name: str) -> str:
    from .logging_setup import LOGGERS

    if name not in LOGGERS:
        raise ConfigError(f"--logger must be one of {', '.join(LOGGERS)}, not {name!r}")
    return name


def _log_outputs(text: str) -> str:
    outputs = [o.strip() for o in text.split(",") if o.strip()]
    if not outputs:
        raise ConfigError("--log-outputs: at least one output is required")
    for output in outputs:
        if output not in ("stderr", "stdout", "default"):
            try:
                with open(output, "a"):
                    pass
            except OSError as exc:
                raise ConfigError(f"--log-outputs: cannot write {output}: {exc.strerror}") from None
    return ",".join(outputs)


def _auth_token(spec: str, ttl_s: int) -> str:
    from .auth_tokens import token_provider

    token_provider(spec, ttl_s)  # raises ConfigError when it cannot be used
    return spec


def _bcrypt_cost(cost: int) -> int:
    if not 4 <= cost <= 31:
        raise ConfigError(f"--bcrypt-cost: must be between 4 and 31, got {cost}")
    return cost


def _retention(mode: str, text: str) -> float:
    """--auto-compaction-retention in seconds (periodic) or revisions (revision mode)."""
    flag = "--auto-compaction-retention"
    if text.isdigit():
        return int(text) * (3600 if mode == "periodic" else 1)
    if mode == "revision":
        raise ConfigError(f"{flag}: {text!r} is not a number of revisions")
    return parse_duration(text, flag)


__all__ = [
    "ConfigError",
    "MemberSpec",
    "NodeConfig",
    "Url",
    "add_flags",
    "config_from_args",
    "member_id",
    "parse_duration",
    "parse_initial_cluster",
    "parse_urls",
]
