"""Python clients of pyraftkv: ``Client`` (blocking) and ``AsyncClient`` (asyncio)."""

from .aio import AsyncClient, Watcher
from .connection import ConnectionLost
from .requests import Compare, Op
from .sync import Client, WatchIterator

__all__ = ["AsyncClient", "Client", "Compare", "ConnectionLost", "Op", "WatchIterator", "Watcher"]
