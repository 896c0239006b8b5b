"""The few KV calls the linearizability workload makes, over etcd's v3 gRPC API, so that
`pyraftkvctl check linearizability --protocol grpc` can test any etcd v3 cluster (etcd
itself, or pyraftkv's gRPC front).

One channel at a time to one endpoint; when a call finds it unreachable the next call
goes to the next endpoint. A call is never retried here: the workload records a write
that failed in any way as one of unknown outcome, and drops a failed read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from google.protobuf.message import Message

from ..client.requests import Bytesish, delete_request, put_request, range_request, txn_request
from ..client.tls import TLS
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME

# etcd's answer to a request carrying a token it no longer knows.
_INVALID_TOKEN = "etcdserver: invalid auth token"


class GrpcKV:
    """Range, Put, DeleteRange and Txn against ``endpoints`` over gRPC (``host:port``)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float,
        tls: TLS | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        if tls is not None and tls.insecure_skip_verify:
            raise ValueError("--insecure-skip-tls-verify is not supported over gRPC")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.user, self.password = user, password
        self._credentials = _channel_credentials(tls) if tls is not None else None
        self._options = (
            [("grpc.ssl_target_name_override", tls.server_name)] if tls and tls.server_name else []
        )
        self._current = 0
        self._channel: grpc.aio.Channel | None = None
        self._token: str | None = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            target = self.endpoints[self._current]
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(
                    target, self._credentials, options=self._options
                )
        return self._channel

    async def _next_endpoint(self) -> None:
        channel, self._channel, self._token = self._channel, None, None
        self._current = (self._current + 1) % len(self.endpoints)
        if channel is not None:
            await channel.close()

    async def _unary(self, name: str, request: Message, metadata=None) -> Message:
        method = BY_NAME[name]
        call = self._open().unary_unary(
            method.grpc_name,
            request_serializer=type(request).SerializeToString,
            response_deserializer=method.response.FromString,
        )
        return await call(request, timeout=self.timeout, metadata=metadata)

    async def call(self, name: str, request: Message) -> Message:
        """One call; raises grpc.aio.AioRpcError as grpcio does (the outcome of a write
        that raised is unknown)."""
        try:
            if self.user and self._token is None:
                answer = await self._unary(
                    "Authenticate", rpc.AuthenticateRequest(name=self.user, password=self.password)
                )
                self._token = answer.token
            metadata = (("token", self._token),) if self._token else None
            return await self._unary(name, request, metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                await self._next_endpoint()
            elif exc.details() == _INVALID_TOKEN:
                self._token = None  # a new one for the next call
            raise

    async def get(self, key: Bytesish, **options) -> rpc.RangeResponse:
        """Range over one key (options as range_request's, e.g. serializable=True)."""
        return await self.call("Range", range_request(key, **options))

    async def put(self, key: Bytesish, value: Bytesish) -> rpc.PutResponse:
        return await self.call("Put", put_request(key, value))

    async def delete(self, key: Bytesish, **options) -> rpc.DeleteRangeResponse:
        return await self.call("DeleteRange", delete_request(key, **options))

    async def txn(
        self,
        compare: Iterable[rpc.Compare] = (),
        success: Iterable[rpc.RequestOp] = (),
        failure: Iterable[rpc.RequestOp] = (),
    ) -> rpc.TxnResponse:
        return await self.call("Txn", txn_request(compare, success, failure))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _channel_credentials(tls: TLS) -> grpc.ChannelCredentials:
    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_file),
        private_key=read(tls.key_file),
        certificate_chain=read(tls.cert_file),
    )
