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
