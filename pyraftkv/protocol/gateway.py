"""etcd 3.4's JSON gateway as data: which POST path calls which method, and how messages
and errors look in JSON (sans-I/O; the HTTP connection lives in node/http_gateway.py).

Messages are proto3 JSON as etcd's gateway writes them: the .proto field names
(``create_revision``, ``ID``), bytes in base64, 64-bit integers as strings, fields at
their default value left out, enums by name. Requests accept either field spelling and
ignore unknown fields, as etcd's does. A failed call answers with the HTTP status of its
gRPC code and ``{"error": ..., "message": ..., "code": ...}``; a streamed call that fails
after its first message ends with ``{"error": {...}}`` on a line of its own.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.message import Message

from .. import errors
from .methods import BY_NAME, Method

_PATHS = {
    "/v3/kv/range": "Range",
    "/v3/kv/put": "Put",
    "/v3/kv/deleterange": "DeleteRange",
    "/v3/kv/txn": "Txn",
    "/v3/kv/compaction": "Compact",
    "/v3/watch": "Watch",
    "/v3/lease/grant": "LeaseGrant",
    "/v3/lease/revoke": "LeaseRevoke",
    "/v3/kv/lease/revoke": "LeaseRevoke",
    "/v3/lease/keepalive": "LeaseKeepAlive",
    "/v3/lease/timetolive": "LeaseTimeToLive",
    "/v3/kv/lease/timetolive": "LeaseTimeToLive",
    "/v3/lease/leases": "LeaseLeases",
    "/v3/kv/lease/leases": "LeaseLeases",
    "/v3/cluster/member/add": "MemberAdd",
    "/v3/cluster/member/remove": "MemberRemove",
    "/v3/cluster/member/update": "MemberUpdate",
    "/v3/cluster/member/list": "MemberList",
    "/v3/cluster/member/promote": "MemberPromote",
    "/v3/maintenance/alarm": "Alarm",
    "/v3/maintenance/status": "Status",
    "/v3/maintenance/defragment": "Defragment",
    "/v3/maintenance/hash": "Hash",
    "/v3/maintenance/snapshot": "Snapshot",
    "/v3/maintenance/transfer-leadership": "MoveLeader",
    "/v3/auth/enable": "AuthEnable",
    "/v3/auth/disable": "AuthDisable",
    "/v3/auth/authenticate": "Authenticate",
    "/v3/auth/user/add": "UserAdd",
    "/v3/auth/user/get": "UserGet",
    "/v3/auth/user/list": "UserList",
    "/v3/auth/user/delete": "UserDelete",
    "/v3/auth/user/changepw": "UserChangePassword",
    "/v3/auth/user/grant": "UserGrantRole",
    "/v3/auth/user/revoke": "UserRevokeRole",
    "/v3/auth/role/add": "RoleAdd",
    "/v3/auth/role/get": "RoleGet",
    "/v3/auth/role/list": "RoleList",
    "/v3/auth/role/delete": "RoleDelete",
    "/v3/auth/role/grant": "RoleGrantPermission",
    "/v3/auth/role/revoke": "RoleRevokePermission",
    "/v3/lock/lock": "Lock",
    "/v3/lock/unlock": "Unlock",
    "/v3/election/campaign": "Campaign",
    "/v3/election/proclaim": "Proclaim",
    "/v3/election/leader": "Leader",
    "/v3/election/observe": "Observe",
    "/v3/election/resign": "Resign",
}
# HashKV has no gateway path in etcd 3.4.
ROUTES: dict[str, Method] = {path: BY_NAME[name] for path, name in _PATHS.items()}

# etcd 3.4 still answers its 3.3 prefix.
OLD_PREFIX, PREFIX = "/v3beta/", "/v3/"

# The HTTP status of each gRPC code (etcd 3.4's gateway's table).
HTTP_STATUS = {
    errors.OK: 200,
    errors.CANCELLED: 408,
    errors.UNKNOWN: 500,
    errors.INVALID_ARGUMENT: 400,
    errors.DEADLINE_EXCEEDED: 504,
    errors.NOT_FOUND: 404,
    errors.ALREADY_EXISTS: 409,
    errors.PERMISSION_DENIED: 403,
    errors.RESOURCE_EXHAUSTED: 429,
    errors.FAILED_PRECONDITION: 412,
    10: 409,  # Aborted
    errors.OUT_OF_RANGE: 400,
    errors.UNIMPLEMENTED: 501,
    13: 500,  # Internal
    errors.UNAVAILABLE: 503,
    15: 500,  # DataLoss
    errors.UNAUTHENTICATED: 401,
}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# Calls whose client side streams: their requests keep coming after the first.
BIDIRECTIONAL = frozenset(("Watch", "LeaseKeepAlive"))


class BadJson(errors.InvalidArgument):
    """A request body that is not the method's message in JSON."""

    def for_call(self, route: Method) -> errors.ApiError:
        """The error as etcd's gateway reports it for ``route``: InvalidArgument, except
        in a bidirectional stream, whose requests are decoded inside the stream (Unknown,
        HTTP 500)."""
        if route.name not in BIDIRECTIONAL:
            return self
        return errors.ApiError(self.message)  # ApiError's code is UNKNOWN


class MessageTooLarge(errors.ApiError):
    """A request message above what the member takes at all (etcd's gRPC limit: the request
    limit plus 512 KiB); between that limit and the request limit, writes are refused with
    "etcdserver: request is too large" by their handlers, as in etcd."""

    code = errors.RESOURCE_EXHAUSTED

    def __init__(self, size: int | None, limit: int) -> None:
        what = f"{size} vs. {limit}" if size is not None else f"the body is over {limit} bytes"
        super().__init__(f"grpc: received message larger than max ({what})")


def route(path: str) -> Method | None:
    """The route of a request path (its query string already cut off)."""
    if path.startswith(OLD_PREFIX):
        path = PREFIX + path[len(OLD_PREFIX) :]
    return ROUTES.get(path)


def parse_requests(
    body: bytes, request_type: type[Message], at_least_one: bool = True
) -> list[Message]:
    """The request messages of a body: JSON objects one after another (a streamed call
    may send several); with ``at_least_one`` an empty body is one empty request."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise BadJson(f"request body is not UTF-8: {exc}") from None
    messages, at = [], _skip_space(text, 0)
    while at < len(text):
        try:
            value, at = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise BadJson(str(exc)) from None
        messages.append(_message(value, request_type))
        at = _skip_space(text, at)
    return messages or ([request_type()] if at_least_one else [])


def call_requests(body: bytes, route: Method, limit: int, at_least_one: bool) -> list[Message]:
    """The request messages of a call's body (parse_requests), each at most ``limit``
    bytes; raises the ApiError etcd's gateway answers otherwise."""
    try:
        messages = parse_requests(body, route.request, at_least_one)
    except BadJson as exc:
        raise exc.for_call(route) from None
    for message in messages:
        size = message.ByteSize()
        if size > limit:
            raise MessageTooLarge(size, limit)
    return messages


def _message(value: object, request_type: type[Message]) -> Message:
    if value is not None and not isinstance(value, dict):
        raise BadJson(f"a request must be a JSON object, not {type(value).__name__}")
    message = request_type()
    try:
        json_format.ParseDict(value or {}, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise BadJson(str(exc)) from None
    return message


_DECODER = json.JSONDecoder()


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def to_json(message: Message) -> bytes:
    """A message as etcd's gateway writes it."""
    return json.dumps(
        json_format.MessageToDict(message, preserving_proto_field_name=True),
        separators=(",", ":"),
    ).encode()


def stream_result(message: Message) -> bytes:
    """One message of a streamed answer: its line."""
    return b'{"result":' + to_json(message) + b"}\n"


def status_line(code: int) -> tuple[int, bytes]:
    """The HTTP status and reason phrase for a gRPC code."""
    status = HTTP_STATUS.get(code, 500)
    return status, REASONS.get(status, "").encode()


def error_body(code: int, message: str) -> bytes:
    """A failed unary call's body."""
    return json.dumps(
        {"error": message, "message": message, "code": code}, separators=(",", ":")
    ).encode()


def stream_error(code: int, message: str) -> bytes:
    """The last line of a streamed call that failed after it started answering."""
    status, reason = status_line(code)
    inner = {
        "grpc_code": code,
        "http_code": status,
        "message": message,
        "http_status": reason.decode(),
    }
    return json.dumps({"error": inner}, separators=(",", ":")).encode() + b"\n"
