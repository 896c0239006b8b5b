"""``--config-file``: a member's settings in etcd 3.4's YAML configuration file format.

Top-level keys are the flag names (``name``, ``data-dir``, ``listen-client-urls``,
``heartbeat-interval``, ...); the TLS settings sit in two blocks as in etcd's file,
``client-transport-security`` and ``peer-transport-security`` (``cert-file``, ``key-file``,
``client-cert-auth``, ``trusted-ca-file``, ``auto-tls``, and for peers ``allowed-cn``).
etcd keys pyraftkv has no use for are accepted when they hold their default (so an etcd
file carries over) and refused otherwise; any other key, or a value of the wrong type, is
refused naming the key. As in etcd, a config file replaces flags and environment.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError

_TLS_BLOCK_KEYS = {
    "cert-file": "cert-file",
    "key-file": "key-file",
    "client-cert-auth": "client-cert-auth",
    "trusted-ca-file": "trusted-ca-file",
    "auto-tls": "auto-tls",
}
_TLS_BLOCKS = {
    "client-transport-security": ("", _TLS_BLOCK_KEYS),
    "peer-transport-security": ("peer-", {**_TLS_BLOCK_KEYS, "allowed-cn": "cert-allowed-cn"}),
}

# etcd 3.4 keys without a pyraftkv meaning: accepted only with a value that changes nothing.
_IGNORED_WHEN: dict[str, Callable[[object], bool]] = {
    **{
        key: lambda v: v in (None, "", [], False)
        for key in (
            "wal-dir",
            "discovery",
            "discovery-srv",
            "discovery-srv-name",
            "discovery-proxy",
            "enable-v2",
            "enable-pprof",
            "debug",
            "log-package-levels",
            "force-new-cluster",
            "enable-grpc-gateway",
            "experimental-enable-v2v3",
            "metrics",
        )
    },  # fmt: skip
    "max-snapshots": lambda v: isinstance(v, int),  # retention is pyraftkv's own
    "max-wals": lambda v: isinstance(v, int),
    "strict-reconfig-check": lambda v: v in (None, True),
    "discovery-fallback": lambda v: v in (None, "", "proxy"),
    "proxy": lambda v: v in (None, "", "off"),
    "listen-client-http-urls": lambda v: v in (None, ""),
}


def _check_type(key: str, value: object, kind: object) -> object:
    """The value of ``key`` as the flag's kind takes it, or ConfigError naming the key."""
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config file: {key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config file: {key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config file: {key}: expected a number, got {value!r}")
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)  # etcd's lists (cipher-suites, log-outputs) as the flag's text
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. auto-compaction-retention: 1
    if not isinstance(value, str):
        raise ConfigError(f"config file: {key}: expected a string, got {value!r}")
    return value


def read_config_file(path: str, kinds: dict[str, object]) -> dict[str, object]:
    """Flag name -> value from the YAML file at ``path``; ``kinds``: each flag's kind."""
    import yaml

    try:
        with open(path) as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"--config-file: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config-file: {path} is not valid YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config-file: {path} must hold a mapping of settings")
    values: dict[str, object] = {}
    for key, value in document.items():
        if key in _TLS_BLOCKS:
            prefix, names = _TLS_BLOCKS[key]
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"config file: {key}: expected a mapping of TLS settings")
            for inner, inner_value in value.items():
                if inner not in names:
                    raise ConfigError(f"config file: unknown key {key}.{inner}")
                flag = prefix + names[inner]
                values[flag] = _check_type(f"{key}.{inner}", inner_value, kinds[flag])
        elif key in kinds and key != "config-file":
            values[key] = _check_type(key, value, kinds[key])
        elif key in _IGNORED_WHEN:
            if not _IGNORED_WHEN[key](value):
                raise ConfigError(f"config file: {key}: {value!r} is not supported by pyraftkv")
        else:
            raise ConfigError(f"config file: unknown key {key!r}")
    return values
