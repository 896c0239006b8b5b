"""One run of a command: global settings, parsed flags and arguments, streams, the client.

Global flags may also come from the environment: PYRAFTKVCTL_<FLAG> first, then etcdctl's
ETCDCTL_<FLAG> for habit (e.g. ETCDCTL_ENDPOINTS); a flag on the command line wins.
"""

from __future__ import annotations

import getpass
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import BinaryIO

from ..client.aio import AsyncClient, normalize_endpoint
from ..client.tls import TLS
from ..errors import ApiError
from .command import Command
from .errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE, CtlError
from .flags import Flag, Parsed
from .printers import FORMATS, PRINTERS, Printer

GLOBAL_FLAGS = (
    Flag("endpoints", "strings", ("127.0.0.1:2379",), "client endpoints, comma-separated"),
    Flag("dial-timeout", "duration", 2.0, "dial timeout for client connections"),
    Flag(
        "command-timeout",
        "duration",
        5.0,
        "timeout for short running command (excluding dial timeout)",
    ),
    Flag(
        "write-out",
        "str",
        "simple",
        "set the output format (fields, json, protobuf, simple, table)",
        short="w",
    ),
    Flag("hex", "bool", False, "print byte strings as hex encoded strings"),
    Flag(
        "cacert",
        "str",
        "",
        "verify certificates of TLS-enabled secure servers using this CA bundle",
    ),
    Flag("cert", "str", "", "identify secure client using this TLS certificate file"),
    Flag("key", "str", "", "identify secure client using this TLS key file"),
    Flag(
        "insecure-skip-tls-verify",
        "bool",
        False,
        "skip server certificate verification "
        "(CAUTION: this option should be enabled only for testing purposes)",
    ),
    Flag("insecure-transport", "bool", True, "disable transport security for client connections"),
    Flag(
        "user",
        "str",
        "",
        "username[:password] for authentication (prompt if password is not supplied)",
    ),
    Flag(
        "password",
        "str",
        "",
        "password for authentication "
        "(if this option is used, --user option shouldn't include password)",
    ),
)
HELP_FLAG = Flag("help", "bool", False, "help for this command", short="h")
ENV_PREFIXES = ("PYRAFTKVCTL_", "ETCDCTL_")


def env_names(flag: Flag) -> list[str]:
    """The environment variables that can set a global flag, in order of precedence."""
    suffix = flag.name.upper().replace("-", "_")
    return [prefix + suffix for prefix in ENV_PREFIXES]


@dataclass(frozen=True)
class Settings:
    """The global options every command shares."""

    endpoints: tuple[str, ...]
    dial_timeout: float
    command_timeout: float
    write_out: str
    hex: bool
    tls: TLS | None = None  # None: plaintext
    user: str | None = None
    password: str | None = None  # None with a user: ask for it (ask_password)


def settings_from(parsed: Parsed, environ: Mapping[str, str]) -> Settings:
    """Global options from flags, then the environment, then the defaults."""
    values = {}
    for flag in GLOBAL_FLAGS:
        value = getattr(parsed.values, flag.attr)
        if flag.name not in parsed.given:
            for name in env_names(flag):
                if name in environ:
                    try:
                        value = flag.convert(environ[name])
                    except CtlError as exc:
                        raise CtlError(f"{name}: {exc.message}") from None
                    break
        values[flag.attr] = value
    endpoints = []
    for endpoint in values["endpoints"]:
        try:
            endpoints.append(normalize_endpoint(endpoint))
        except ValueError as exc:
            raise CtlError(str(exc), EXIT_BAD_ARGS) from None
    try:
        tls = _tls(values)
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_BAD_ARGS) from None
    if tls is None and any(e.startswith("https://") for e in values["endpoints"]):
        tls = TLS()
    if values["write_out"] not in FORMATS:
        raise CtlError("unsupported output format", EXIT_BAD_FEATURE)
    return Settings(
        endpoints=tuple(endpoints),
        dial_timeout=float(values["dial_timeout"]),
        command_timeout=float(values["command_timeout"]),
        write_out=values["write_out"],
        hex=bool(values["hex"]),
        tls=tls,
        **_credentials(values["user"], values["password"]),
    )


def _credentials(user: str, password: str) -> dict:
    """--user name[:password] and --password, as etcdctl 3.4 reads them: with --password,
    all of --user is the name (a colon included)."""
    if not user:
        return {}
    if password:
        return {"user": user, "password": password}
    name, sep, inline = user.partition(":")
    return {"user": name, "password": inline if sep else None}


def ask_password(stdin: BinaryIO, stdout: BinaryIO) -> str:
    """etcdctl's prompt for --user without a password: "Password: ", the answer read
    without echo from the terminal; from a pipe, one line of stdin (the prompt and a
    newline still go to stdout, as etcdctl writes them)."""
    try:
        terminal = os.isatty(stdin.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        terminal = False
    if terminal:
        stdout.flush()
        try:
            return getpass.getpass("Password: ")
        except EOFError:
            return ""
    stdout.write(b"Password: ")
    stdout.flush()
    line = stdin.readline().decode(errors="replace").rstrip("\r\n")
    stdout.write(b"\n")
    return line


def _tls(values: dict) -> TLS | None:
    """etcdctl's rule: TLS when a certificate, key or CA is given or --insecure-transport
    is false; --insecure-skip-tls-verify then skips verifying the server."""
    if not (values["cert"] or values["key"] or values["cacert"]) and values["insecure_transport"]:
        return None
    return TLS(
        ca_file=values["cacert"] or None,
        cert_file=values["cert"] or None,
        key_file=values["key"] or None,
        insecure_skip_verify=bool(values["insecure_skip_tls_verify"]),
    )


@dataclass
class Invocation:
    """Everything a command handler needs; handlers raise CtlError to fail."""

    command: Command
    opts: SimpleNamespace
    args: list[str]
    dash_at: int | None
    settings: Settings
    stdin: BinaryIO
    stdout: BinaryIO
    stderr: BinaryIO
    _clients: list[AsyncClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.printer: Printer = PRINTERS[self.settings.write_out](
            self.stdout, self.stderr, hex_bytes=self.settings.hex
        )

    def new_client(self, endpoints: tuple[str, ...] | list[str] | None = None) -> AsyncClient:
        """A client for ``endpoints`` (default: --endpoints), closed when the command ends."""
        client = AsyncClient(
            list(endpoints or self.settings.endpoints),
            timeout=self.settings.command_timeout,
            connect_timeout=self.settings.dial_timeout,
            tls=self.settings.tls or False,
            user=self.settings.user,
            password=self.settings.password,
        )
        self._clients.append(client)
        return client

    async def client(self) -> AsyncClient:
        """The shared client, connected (a clear error now if no endpoint answers)."""
        if not self._clients:
            try:
                await self.new_client().connection()
            except ApiError as exc:  # e.g. a wrong password: no client, as etcdctl's exit 2
                raise CtlError(exc.message, EXIT_BAD_CONNECTION) from None
        return self._clients[0]

    async def close(self) -> None:
        """Close every client the command made."""
        for client in self._clients:
            await client.close()

    def write(self, text: str | bytes, *, err: bool = False) -> None:
        """Write a line to stdout (or stderr)."""
        data = text.encode() if isinstance(text, str) else text
        (self.stderr if err else self.stdout).write(data + b"\n")


def arg_bytes(arg: str) -> bytes:
    """A command-line argument as the bytes the user typed (undecodable bytes kept)."""
    return os.fsencode(arg)


class _TextSink(io.RawIOBase):
    """Lets printers write bytes to a text stream (e.g. io.StringIO in tests)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._stream.write(bytes(data).decode("utf-8", "surrogateescape"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


class _TextSource(io.RawIOBase):
    """Lets commands read bytes from a text stream."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readline(self, size: int = -1) -> bytes:
        return self._stream.readline().encode("utf-8", "surrogateescape")

    def read(self, size: int = -1) -> bytes:
        return self._stream.read().encode("utf-8", "surrogateescape")


def binary_stream(stream, *, reading: bool = False):
    """The binary side of ``stream``: itself if binary, its buffer, or an adapter."""
    if isinstance(stream, io.TextIOBase):
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            return buffer
        return _TextSource(stream) if reading else _TextSink(stream)
    return stream
