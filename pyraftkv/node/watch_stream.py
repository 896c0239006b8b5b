"""One client Watch stream: the watchers it created, by watch id, and what create, cancel
and progress requests do (etcd's watch stream semantics)."""

from __future__ import annotations

from .. import errors
from ..proto import rpc_pb2 as rpc
from .watch_hub import Watcher


class WatchStream:
    """The watchers a client created on one Watch stream (etcd's watch stream)."""

    def __init__(self, connection, stream: int) -> None:
        self.connection = connection
        self.stream = stream
        self.watchers: dict[int, Watcher] = {}
        self._next_watch_id = 0

    # WatchSink
    def send_message(self, body: bytes) -> None:
        self.connection.message(self.stream, body)

    def backlog_bytes(self) -> int:
        return self.connection.backlog_bytes()

    def handle(self, request: rpc.WatchRequest) -> None:
        app = self.connection.app
        hub = app.watch_hub
        which = request.WhichOneof("request_union")
        if which == "create_request":
            create = request.create_request
            try:
                self.connection.server.auth.check_watch(
                    self.connection.user, self.connection.auth_revision, create
                )
            except errors.ApiError as exc:  # as etcd: a created-and-canceled answer
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=-1,
                        created=True,
                        canceled=True,
                        cancel_reason=errors.grpc_text(exc),
                    ).SerializeToString()
                )
                return
            watch_id = create.watch_id
            if watch_id == 0:
                while self._next_watch_id in self.watchers:
                    self._next_watch_id += 1
                watch_id = self._next_watch_id
                self._next_watch_id += 1
            elif watch_id in self.watchers:  # etcd 3.4's answer, id -1 and its words
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=-1,
                        created=True,
                        canceled=True,
                        cancel_reason="mvcc: duplicate watch ID provided on the WatchStream",
                    ).SerializeToString()
                )
                return
            start = create.start_revision or app.store.revision + 1
            max_bytes = self.connection.server.max_request_bytes
            watcher = Watcher(watch_id, self, create, start, max_bytes)
            self.watchers[watch_id] = watcher
            self.send_message(
                rpc.WatchResponse(
                    header=app.header(), watch_id=watch_id, created=True
                ).SerializeToString()
            )
            hub.add(watcher)
            app.schedule_catch_up()
        elif which == "cancel_request":
            watcher = self.watchers.pop(request.cancel_request.watch_id, None)
            if watcher is not None:
                hub.remove(watcher)
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=watcher.watch_id,
                        canceled=True,
                    ).SerializeToString()
                )
        elif which == "progress_request" and all(w.synced for w in self.watchers.values()):
            # etcd answers a progress request with watch id -1 for the whole stream.
            self.send_message(
                rpc.WatchResponse(header=app.header(), watch_id=-1).SerializeToString()
            )

    def end_without_leader(self) -> None:
        """End the stream "no leader" (its client asked for a leader: FLAG_LEADER)."""
        self.close()
        self.connection.watch_streams.pop(self.stream, None)
        self.connection.error(self.stream, errors.NoLeader())

    def close(self) -> None:
        self.connection.server.leader_bound.discard(self)
        hub = self.connection.app.watch_hub
        for watcher in self.watchers.values():
            hub.remove(watcher)
        self.watchers.clear()
