"""Where an answer goes: one client stream on one connection, or the member itself (the
lock, election and auth services make requests of their own)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from .. import errors
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc


class Reply:
    """One request's way back: ``answer`` with the encoded response, or ``fail``."""

    __slots__ = ("connection", "stream")

    def __init__(self, connection: Any, stream: int) -> None:
        self.connection = connection
        self.stream = stream

    def answer(self, body: bytes) -> None:
        self.connection.reply(self.stream, body)

    def fail(self, error: errors.ApiError, leader_url: str = "") -> None:
        self.connection.error(self.stream, error, leader_url)


class PendingOutput:
    """Connections with replies queued in this loop iteration, written together: on the
    next callback, or at once after an apply (one writer's reply need not wait for the
    rest of the loop's work), one send per connection either way."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[Any] = []

    def add(self, connection: Any) -> None:
        """``connection`` has output to write: its ``write_out`` runs soon."""
        if not self._waiting:
            self._loop.call_soon(self.write)
        self._waiting.append(connection)

    def write(self) -> None:
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            connection.write_out()


class LocalCaller:
    """Stands in for a client connection when the member itself makes a request: the
    answer resolves a future instead of leaving on a socket."""

    closed = False

    def __init__(self, future: asyncio.Future, parse: Callable[[bytes], Message]) -> None:
        self._future = future
        self._parse = parse

    def reply(self, stream: int, body: bytes) -> None:
        if not self._future.done():
            self._future.set_result(self._parse(body))

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if not self._future.done():
            self._future.set_exception(error)


class EventWaiter:
    """A watch sink that resolves a future with the first event it is sent."""

    def __init__(self, future: asyncio.Future, deletes_only: bool) -> None:
        self._future = future
        self._deletes_only = deletes_only

    def send_message(self, body: bytes) -> None:
        if self._future.done():
            return
        response = rpc.WatchResponse.FromString(body)
        if response.canceled:
            self._future.set_exception(errors.Compacted())
            return
        for event in response.events:
            if not self._deletes_only or event.type == kv_pb2.Event.DELETE:
                self._future.set_result(event)
                return

    def backlog_bytes(self) -> int:
        return 0
