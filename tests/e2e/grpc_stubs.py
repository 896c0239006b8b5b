"""grpcio stubs for etcd's gRPC methods by name, typed from pyraftkv's method table: tests
call pyraftkv's and real etcd's gRPC API through the same stubs."""

from __future__ import annotations

import grpc

from pyraftkv.protocol.gateway import BIDIRECTIONAL
from pyraftkv.protocol.methods import BY_NAME


def stub(channel: grpc.Channel, name: str):
    """The callable for method ``name`` ("Put", "Watch", ...) on ``channel``."""
    method = BY_NAME[name]
    if not method.streaming:
        make = channel.unary_unary
    elif name in BIDIRECTIONAL:
        make = channel.stream_stream
    else:
        make = channel.unary_stream
    return make(
        method.grpc_name,
        request_serializer=method.request.SerializeToString,
        response_deserializer=method.response.FromString,
    )
