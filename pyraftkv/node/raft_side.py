"""A member's Raft side as the application process supervises it: a process of its own
(the default), or the same RaftProcess on the application's event loop (``--single-process``).

Two processes let a busy leader use two cores: its application applies and answers while
its Raft side writes the WAL and talks to peers. One process saves the two hand-overs
between them on every write (each a wake-up that waits for a CPU, and a cold cache), which
is what one writer waiting for each answer feels: a lock hand-over, a leader's heartbeat
key, a config change. Both run the same code; only the link differs (ring_link.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
from collections.abc import Callable

from ..errors import PyraftkvError
from .python_command import module_command
from .raft_bootstrap import RaftProcessConfig, open_core
from .ring_link import LocalLink

log = logging.getLogger("pyraftkv.server")


class RaftSubprocess:
    """The Raft side in a process of its own, linked by the shared memory rings whose
    descriptors ``cfg`` names."""

    name = "the Raft process"

    def __init__(
        self, loop: asyncio.AbstractEventLoop, cfg: RaftProcessConfig, on_exit: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._process = subprocess.Popen(
            module_command("pyraftkv.node.raft_process"),
            pass_fds=[*cfg.down_fds, *cfg.up_fds],
            env={**os.environ, "PYRAFTKV_RAFT_CONFIG": cfg.to_json()},
            # Its own session: a terminal's Ctrl-C or a group SIGTERM reaches only the
            # application, which then stops the Raft process in order (STOP on the ring).
            start_new_session=True,
        )
        self._pidfd = os.pidfd_open(self._process.pid)
        loop.add_reader(self._pidfd, self._exited)

    @property
    def returncode(self) -> int | None:
        """The exit status, None while it runs."""
        return self._process.poll()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _exited(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._process.wait()
        self._on_exit()

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()


class RaftInProcess:
    """The Raft side on this process's event loop, linked by ``link``'s peer."""

    name = "the Raft side"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cfg: RaftProcessConfig,
        link: LocalLink,
        on_exit: Callable[[], None],
    ) -> None:
        self.returncode: int | None = None
        self._raft = None
        self._task = loop.create_task(self._run(cfg, link, on_exit))

    async def _run(self, cfg: RaftProcessConfig, link: LocalLink, on_exit) -> None:
        from .raft_process import RaftProcess

        try:
            core, wal, last = open_core(cfg, random.Random())
            self._raft = RaftProcess(cfg, core, wal, link, last)
            await self._raft.start()
            await self._raft.stopped.wait()
            self.returncode = 0
        except PyraftkvError as exc:  # what the Raft process exits with status 2 on
            log.critical("%s", exc)
            self.returncode = 2
        except Exception:
            log.exception("the Raft side failed")
            self.returncode = 1
        on_exit()

    def terminate(self) -> None:
        if self._raft is not None:
            self._raft.stop()
        else:
            self._task.cancel()

    def kill(self) -> None:
        """Nothing to kill in this process: what a stop has not flushed, the WAL's
        recovery handles at the next start, as after a crash."""
        self._task.cancel()
