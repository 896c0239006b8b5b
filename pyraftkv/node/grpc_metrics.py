"""gRPC calls started and handled, by method and status code, for /metrics.

etcd exports these through its gRPC server's Prometheus interceptor, and its dashboards
and alerts read them (request rates, failed calls, open watch streams):
``grpc_server_started_total`` and ``grpc_server_handled_total``, labelled ``grpc_method``,
``grpc_service``, ``grpc_type`` (``unary``, ``server_stream``, ``bidi_stream``) and, when
handled, ``grpc_code`` (the status code's name). A call its client cancels or drops before
it ends counts as ``Canceled``. Every method's series are listed from the start, at 0, as
etcd's are: Prometheus' rate() cannot see the first increment of a series that appears
with it (the first failed call of a kind would never show).
"""

from __future__ import annotations

from collections import Counter

from ..errors import code_name
from ..protocol.gateway import BIDIRECTIONAL
from ..protocol.methods import METHODS, Method


def _labels(method: Method) -> str:
    service, name = method.grpc_name[1:].rsplit("/", 1)
    if not method.streaming:
        kind = "unary"
    else:
        kind = "bidi_stream" if name in BIDIRECTIONAL else "server_stream"
    return f'grpc_method="{name}",grpc_service="{service}",grpc_type="{kind}"'


# gRPC status codes, OK (0) to Unauthenticated (16).
_CODES = range(17)
# Every method, in number order, with its labels.
_LABELS = [(method, _labels(method)) for method in sorted(METHODS, key=lambda m: m.number)]


class GrpcCallCounts:
    """Counts of the member's gRPC calls (grpc_front.py counts each call once at each end)."""

    def __init__(self) -> None:
        self.started: Counter[Method] = Counter()
        self.handled: Counter[tuple[Method, int]] = Counter()

    def lines(self) -> list[str]:
        """Both counters in the Prometheus text format."""
        lines = [
            "# HELP grpc_server_started_total RPCs started on the server.",
            "# TYPE grpc_server_started_total counter",
        ]
        started, handled = self.started, self.handled
        for method, labels in _LABELS:
            lines.append(f"grpc_server_started_total{{{labels}}} {started[method]}")
        lines += [
            "# HELP grpc_server_handled_total RPCs completed on the server, by status code.",
            "# TYPE grpc_server_handled_total counter",
        ]
        for method, labels in _LABELS:
            for code in _CODES:
                n = handled[method, code]
                lines.append(
                    f'grpc_server_handled_total{{grpc_code="{code_name(code)}",{labels}}} {n}'
                )
        return lines
