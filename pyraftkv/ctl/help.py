"""Help texts shaped like etcdctl's (NAME, USAGE, COMMANDS, OPTIONS, GLOBAL OPTIONS)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import __version__
from .command import COMMANDS, GROUPS, RESPONSE_FORMATS, Command, command
from .flags import Flag
from .invocation import GLOBAL_FLAGS, HELP_FLAG, Invocation

PROGRAM = "pyraftkvctl"
API_VERSION = "3.4"


def _flag_lines(flags: Iterable[Flag]) -> list[str]:
    rows = []
    for flag in sorted(flags, key=lambda f: f.name):
        short = f"-{flag.short}, " if flag.short else "    "
        suffix = "[=false]" if flag.kind == "bool" else f"={flag.default_text()}"
        rows.append((f"  {short}--{flag.name}{suffix}", flag.help))
    width = max(len(left) for left, _ in rows) + 2
    return [f"{left:<{width}}{text}" for left, text in rows]


def _command_lines(entries: Iterable[tuple[str, str]]) -> list[str]:
    entries = sorted(entries)
    width = max(len(name) for name, _ in entries) + 2
    return [f"\t{name:<{width}}{summary}" for name, summary in entries]


def root_help() -> str:
    """``pyraftkvctl --help``."""
    lines = [
        "NAME:",
        f"\t{PROGRAM} - A simple command line client for pyraftkv (etcdctl v3 commands).",
        "",
        "USAGE:",
        f"\t{PROGRAM} [flags] <command> [args]",
        "",
        "VERSION:",
        f"\t{__version__}",
        "",
        "API VERSION:",
        f"\t{API_VERSION}",
        "",
        "COMMANDS:",
        *_command_lines((c.name, c.summary) for c in COMMANDS.values()),
        "",
        "OPTIONS:",
        *_flag_lines([*GLOBAL_FLAGS, HELP_FLAG]),
        "",
    ]
    return "\n".join(lines)


def group_help(name: str) -> str:
    """``pyraftkvctl member --help``."""
    lines = [
        "NAME:",
        f"\t{name} - {GROUPS[name]}",
        "",
        "USAGE:",
        f"\t{PROGRAM} {name} <subcommand> [flags]",
        "",
        "COMMANDS:",
        *_command_lines((c.path[1], c.summary) for c in COMMANDS.values() if c.path[0] == name),
        "",
        "OPTIONS:",
        *_flag_lines([HELP_FLAG]),
        "",
        "GLOBAL OPTIONS:",
        *_flag_lines(GLOBAL_FLAGS),
        "",
    ]
    return "\n".join(lines)


def command_help(command: Command) -> str:
    """``pyraftkvctl get --help``."""
    usage = f"{PROGRAM} {command.name} {command.usage}".rstrip()
    lines = ["NAME:", f"\t{command.name} - {command.summary}", "", "USAGE:", f"\t{usage}", ""]
    if command.description:
        lines += ["DESCRIPTION:", *(f"\t{line}" for line in command.description.splitlines()), ""]
    lines += [
        "OPTIONS:",
        *_flag_lines([*command.flags, HELP_FLAG]),
        "",
        "GLOBAL OPTIONS:",
        *_flag_lines(GLOBAL_FLAGS),
        "",
    ]
    return "\n".join(lines)


@command("version", summary="Prints the version of pyraftkvctl", formats=RESPONSE_FORMATS)
async def version(inv: Invocation) -> None:
    """Print pyraftkvctl's version and the etcd API version it speaks."""
    inv.write(f"{PROGRAM} version: {__version__}")
    inv.write(f"API version: {API_VERSION}")
