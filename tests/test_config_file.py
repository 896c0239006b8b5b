"""--config-file: etcd 3.4's YAML keys, the file winning over flags and environment as in
etcd, and every wrong key or type refused by name."""

from __future__ import annotations

import argparse
import textwrap

import pytest

from pyraftkv.node.config import ConfigError, add_flags, config_from_args

ETCD_STYLE = """
name: infra1
data-dir: {data_dir}
wal-dir:
snapshot-count: 5000
heartbeat-interval: 50
election-timeout: 500
quota-backend-bytes: 4294967296
listen-peer-urls: http://10.0.0.1:2380
listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://10.0.0.1:2380
advertise-client-urls: http://10.0.0.1:2379
discovery:
discovery-fallback: 'proxy'
initial-cluster: infra1=http://10.0.0.1:2380,infra2=http://10.0.0.2:2380
initial-cluster-token: 'etcd-cluster-1'
initial-cluster-state: 'existing'
strict-reconfig-check: true
enable-v2: false
proxy: 'off'
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  client-cert-auth: false
  auto-tls: false
cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
auto-compaction-mode: revision
auto-compaction-retention: 1000
max-request-bytes: 2097152
log-level: warning
"""


def parse(argv: list[str], environ: dict[str, str] | None = None):
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return config_from_args(parser.parse_args(argv), environ or {})


def write(tmp_path, text: str) -> str:
    path = tmp_path / "pyraftkv.conf.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_an_etcd_style_file_gives_every_setting(tmp_path):
    path = write(tmp_path, ETCD_STYLE.format(data_dir=tmp_path / "d"))
    config = parse(["--config-file", path])
    assert config.name == "infra1"
    assert config.data_dir == str(tmp_path / "d")
    assert (config.heartbeat_interval_ms, config.election_timeout_ms) == (50, 500)
    assert (config.snapshot_count, config.quota_backend_bytes) == (5000, 4 << 30)
    assert [u.text for u in config.listen_client_urls] == [
        "http://10.0.0.1:2379",
        "http://127.0.0.1:2379",
    ]
    assert [m.name for m in config.initial_cluster] == ["infra1", "infra2"]
    assert config.initial_cluster_state == "existing"
    assert config.auto_compaction_mode == "revision"
    assert config.auto_compaction_retention == 1000
    assert config.max_request_bytes == 2 << 20 and config.log_level == "warning"
    assert config.client_tls.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",)


def test_the_file_wins_over_flags_and_environment(tmp_path):
    path = write(tmp_path, "name: from-file\nsnapshot-count: 42\n")
    environ = {"PYRAFTKV_NAME": "from-env", "PYRAFTKV_ELECTION_TIMEOUT": "3000"}
    config = parse(["--config-file", path, "--name", "from-flag", "--heartbeat-interval", "7"])
    assert config.name == "from-file" and config.snapshot_count == 42
    # Settings the file leaves out take their defaults, not the flags or the environment.
    config = parse(["--config-file", path, "--heartbeat-interval", "7"], environ)
    assert (config.heartbeat_interval_ms, config.election_timeout_ms) == (100, 1000)
    # The file may come from the environment too.
    assert parse([], {"PYRAFTKV_CONFIG_FILE": path}).name == "from-file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nmae: typo\n", "unknown key 'nmae'"),
        ("heartbeat-interval: 100ms\n", "heartbeat-interval: expected an integer"),
        ("snapshot-count: true\n", "snapshot-count: expected an integer"),
        ("client-transport-security:\n  client-cert-auth: yes please\n", "expected true or"),
        ("peer-transport-security:\n  cert: a.pem\n", "unknown key peer-transport-security.cert"),
        ("client-transport-security: [a]\n", "client-transport-security: expected a mapping"),
        ("name: [a, 1]\n", "name: expected a string"),
        ("enable-v2: true\n", "enable-v2: True is not supported by pyraftkv"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("name: : :\n", "is not valid YAML"),
        ("heartbeat-interval: -5\n", "config file: heartbeat-interval: must be positive"),
    ],
)
def test_wrong_keys_and_types_are_refused_by_name(tmp_path, text, message):
    with pytest.raises(ConfigError) as refused:
        parse(["--config-file", write(tmp_path, text)])
    assert message in str(refused.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parse(["--config-file", str(tmp_path / "nope.yml")])
