"""Server configuration: defaults, environment, etcd's id derivation and bad flags."""

import argparse
import re

import pytest

from pyraftkv.node.config import ConfigError, add_flags, config_from_args, member_id


def parse(argv, environ=None):
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return config_from_args(parser.parse_args(argv), environ or {})


def test_defaults_are_a_single_member_on_loopback():
    config = parse([])
    assert config.name == "default"
    assert config.data_dir == "default.pyraftkv"
    assert [u.hostport for u in config.listen_client_urls] == ["127.0.0.1:2379"]
    assert [u.hostport for u in config.listen_peer_urls] == ["127.0.0.1:2380"]
    assert [m.name for m in config.initial_cluster] == ["default"]
    assert config.election_ticks == 10
    assert config.watch_progress_notify_interval_s == 600  # etcd's 10m
    assert config.listen_metrics_urls == ()  # no metrics listener unless asked
    assert config.auto_compaction_retention == 0  # no auto-compaction unless asked
    assert config.write_trace_interval_ms == 10.0  # a single writer's every write costs 2-4 %


def test_environment_fills_in_and_flags_win():
    env = {"PYRAFTKV_NAME": "envname", "PYRAFTKV_SNAPSHOT_COUNT": "77"}
    assert parse([], env).name == "envname"
    assert parse([], env).snapshot_count == 77
    assert parse(["--name", "flagname"], env).name == "flagname"


def test_member_ids_follow_peer_urls_and_token():
    a = member_id(["http://127.0.0.1:2380"], "t1")
    assert a == member_id(["http://127.0.0.1:2380"], "t1")
    assert a != member_id(["http://127.0.0.1:2380"], "t2")
    assert a != member_id(["http://127.0.0.1:2381"], "t1")
    assert member_id(["http://b:1", "http://a:1"], "t") == member_id(
        ["http://a:1", "http://b:1"], "t"
    )


def test_three_member_cluster():
    cluster = "a=http://127.0.0.1:3001,b=http://127.0.0.1:3002,c=http://127.0.0.1:3003"
    config = parse(
        [
            "--name",
            "b",
            "--initial-cluster",
            cluster,
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:3002",
        ]
    )
    assert len(config.initial_cluster) == 3
    assert config.member_id == member_id(["http://127.0.0.1:3002"], "pyraftkv-cluster")
    other = parse(
        [
            "--name",
            "a",
            "--initial-cluster",
            cluster,
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:3001",
        ]
    )
    assert other.cluster_id == config.cluster_id
    assert other.member_id != config.member_id


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--name", "x", "--initial-cluster", "y=http://127.0.0.1:2380"], "no member named 'x'"),
        (["--initial-cluster", "default=http://127.0.0.1:9999"], "peer URLs"),
        (["--listen-client-urls", "127.0.0.1:2379"], "http://host:port"),
        (["--listen-client-urls", "http://127.0.0.1"], "host and a port"),
        (["--initial-cluster-state", "maybe"], "'new' or 'existing'"),
        (["--heartbeat-interval", "abc"], "not an integer"),
        (["--heartbeat-interval", "-5"], "must be positive"),
        (["--heartbeat-interval", "500", "--election-timeout", "1000"], "at least 5 times"),
        (["--initial-cluster", "novalue"], "not name=url"),
        (["--log-level", "loud"], "--log-level"),
        (["--listen-metrics-urls", "127.0.0.1:2381"], "--listen-metrics-urls"),
        (["--auto-compaction-mode", "hourly"], "'periodic' or 'revision'"),
        (["--auto-compaction-retention", "soon"], "not a duration"),
        (
            ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
            "not a number of revisions",
        ),
        (["--experimental-watch-progress-notify-interval", "10"], "not a duration"),
        (["--experimental-watch-progress-notify-interval", "5 m"], "not a duration"),
        (["--experimental-watch-progress-notify-interval", "0s"], "must be positive"),
        (["--max-request-bytes", str(2 << 30)], "at most 1073741824"),
        (["--cors", "http://a.example"], "scheme://host:port"),
        (["--cors", "a.example:80"], "scheme://host:port"),
    ],
)
def test_bad_flags_are_refused_with_a_clear_message(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(argv)


def test_cors_and_host_whitelist_are_sets_or_anything():
    config = parse(
        ["--cors", "http://a.example:80, https://b.example:443", "--host-whitelist", "x"]
    )
    assert config.cors == {"http://a.example:80", "https://b.example:443"}
    assert config.host_whitelist == {"x"}
    default = parse([])
    assert default.cors is None and default.host_whitelist is None  # anything goes
    assert parse(["--cors", "*", "--host-whitelist", "a,*"]).host_whitelist is None


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="PYRAFTKV_SNAPSHOT_COUNT"):
        parse([], {"PYRAFTKV_SNAPSHOT_COUNT": "lots"})


@pytest.mark.parametrize(
    "text, seconds",
    [("10m", 600), ("500ms", 0.5), ("1m30s", 90), ("1.5h", 5400), ("250us", 0.00025)],
)
def test_durations_are_written_as_etcd_flags_take_them(text, seconds):
    config = parse(["--experimental-watch-progress-notify-interval", text])
    assert config.watch_progress_notify_interval_s == pytest.approx(seconds)


@pytest.mark.parametrize(
    "argv, mode, retention",
    [
        (["--auto-compaction-retention", "2"], "periodic", 7200),  # hours by default
        (["--auto-compaction-retention", "30m"], "periodic", 1800),
        (["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"],
         "revision", 1000),
    ],
)  # fmt: skip
def test_auto_compaction_retention_is_read_as_its_mode_says(argv, mode, retention):
    config = parse(argv)
    assert (config.auto_compaction_mode, config.auto_compaction_retention) == (mode, retention)


HTTPS_PEER = ["--listen-peer-urls", "https://127.0.0.1:2380"]
HTTPS_PEER += ["--initial-advertise-peer-urls", "https://127.0.0.1:2380"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (HTTPS_PEER, "--listen-peer-urls has an https URL: give --peer-cert-file"),
        (["--listen-client-urls", "https://127.0.0.1:2379"], "give --cert-file and --key-file"),
        (["--cert-file", "c.pem"], "--cert-file and --key-file must be given together"),
        (["--peer-client-cert-auth"], "--peer-client-cert-auth needs --peer-trusted-ca-file"),
        (["--cert-file", "/nonexistent.pem", "--key-file", "/x.pem"], "cannot use certificate"),
        (["--trusted-ca-file", "/nonexistent.pem"], "cannot use trusted CA file"),
        (["--cipher-suites", "TLS_NOPE"], "unknown cipher suite 'TLS_NOPE'"),
        (["--client-cert-auth=maybe"], "'maybe' is not true or false"),
    ],
)
def test_bad_tls_flags_are_refused_with_a_clear_message(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(argv)


def test_tls_flags_are_read_as_etcd_reads_them(tmp_path):
    config = parse([*HTTPS_PEER, "--peer-auto-tls", "--client-cert-auth=false"])
    assert config.peer_tls.auto_tls and not config.peer_tls.has_cert
    assert config.listen_peer_urls[0].tls and not config.listen_client_urls[0].tls
    assert not config.client_tls.client_cert_auth
    assert parse([], {"PYRAFTKV_PEER_AUTO_TLS": "true"}).peer_tls.auto_tls
    # auto TLS makes a self-signed certificate once and reuses it
    made = config.peer_tls.with_auto_cert(str(tmp_path / "peer"), ["127.0.0.1"])
    assert made.has_cert and made.self_signed
    made.server_context()
    first = (tmp_path / "peer" / "cert.pem").read_bytes()
    again = config.peer_tls.with_auto_cert(str(tmp_path / "peer"), ["127.0.0.1"])
    assert again == made and (tmp_path / "peer" / "cert.pem").read_bytes() == first


def test_cipher_suites_limit_tls12_to_the_named_suites():
    config = parse(["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
    context = config.peer_tls.client_context()
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert config.client_tls.cipher_suites == config.peer_tls.cipher_suites
