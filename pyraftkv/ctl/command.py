"""The command table: every pyraftkvctl command registers itself here with its flags.

A command is an async function taking an Invocation, declared with ``@command``::

    @command("lease", "grant", summary="Creates leases", usage="<ttl>", flags=[...])
    async def lease_grant(inv: Invocation) -> None: ...

Groups ("member", "endpoint", ...) are declared once with ``group``. main.py imports
the modules that hold the commands, which fills the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .flags import Flag

if TYPE_CHECKING:
    from .invocation import Invocation

Handler = Callable[["Invocation"], Awaitable[int | None]]

SIMPLE_JSON = ("simple", "json")
# Commands that print a response message: etcdctl's fields and protobuf forms show it too.
RESPONSE_FORMATS = ("simple", "json", "fields", "protobuf")
ALL_FORMATS = ("simple", "json", "table", "fields", "protobuf")
# Commands whose answer etcdctl shows in every format but fields (member changes,
# move-leader, alarms) or every format but protobuf (endpoint commands, snapshot status).
NO_FIELDS = ("simple", "json", "protobuf")
NO_PROTOBUF = ("simple", "json", "table", "fields")


@dataclass(frozen=True)
class Command:
    """One runnable command: its words, help texts, flags, output formats and handler."""

    path: tuple[str, ...]
    summary: str
    usage: str
    flags: tuple[Flag, ...]
    handler: Handler
    formats: tuple[str, ...] = SIMPLE_JSON
    description: str = ""

    @property
    def name(self) -> str:
        """The command as typed: "member list"."""
        return " ".join(self.path)


COMMANDS: dict[tuple[str, ...], Command] = {}
GROUPS: dict[str, str] = {}


def group(name: str, summary: str) -> None:
    """Declare a command group such as "member" (its subcommands register separately)."""
    GROUPS[name] = summary


def command(
    *path: str,
    summary: str,
    usage: str = "",
    flags: Iterable[Flag] = (),
    formats: tuple[str, ...] = SIMPLE_JSON,
    description: str = "",
) -> Callable[[Handler], Handler]:
    """Register the decorated handler as the command ``path``."""
    assert 1 <= len(path) <= 2 and (len(path) == 1 or path[0] in GROUPS), path

    def register(handler: Handler) -> Handler:
        assert path not in COMMANDS, f"command {path} registered twice"
        COMMANDS[path] = Command(path, summary, usage, tuple(flags), handler, formats, description)
        return handler

    return register
