"""The live operator dashboard: ``pyraftkv dashboard --endpoints=...`` (server.py polls the
members, state.py turns the polls into what the page in static/ draws)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pyraftkv dashboard``."""
    parser.add_argument(
        "--endpoints",
        required=True,
        help="the members' client endpoints, comma-separated host:port",
    )
    parser.add_argument(
        "--address",
        default="127.0.0.1:8080",
        help="host:port the page is served on (default 127.0.0.1:8080)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    # How the poller reaches members that serve TLS or run with auth (etcdctl's flags).
    parser.add_argument("--cacert", help="verify the members' certificates with this CA")
    parser.add_argument("--cert", help="present this client certificate (with --key)")
    parser.add_argument("--key", help="the key of --cert")
    parser.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        help="speak TLS but accept any member certificate (testing only)",
    )
    parser.add_argument("--user", help="username:password to authenticate as, when auth is on")
