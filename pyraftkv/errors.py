"""Errors a client can see, each with the gRPC status code and the message etcd v3 uses.

The native protocol carries (code, message) on the wire; the clients turn them back into
these classes with ``error_from_wire``. Server-side code raises them; nothing else is
needed to make an error reach the caller intact.
"""

from __future__ import annotations

# gRPC status codes (a wire fact shared by both transports).
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
UNAUTHENTICATED = 16


class PyraftkvError(Exception):
    """Base of every error pyraftkv raises on purpose."""


class ConfigError(PyraftkvError):
    """A flag, environment variable, config file or data dir is wrong; the message says
    which and why."""


class ApiError(PyraftkvError):
    """An error that travels to the client: a gRPC status code and a message."""

    code: int = UNKNOWN
    default_message: str = "etcdserver: unknown error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidArgument(ApiError):
    code = INVALID_ARGUMENT
    default_message = "etcdserver: invalid argument"


class EmptyKey(InvalidArgument):
    default_message = "etcdserver: key is not provided"


class RequestTooLarge(InvalidArgument):
    default_message = "etcdserver: request is too large"


class TooManyTxnOps(InvalidArgument):
    default_message = "etcdserver: too many operations in txn request"


class DuplicateKeyInTxn(InvalidArgument):
    default_message = "etcdserver: duplicate key given in txn request"


class KeyNotFound(InvalidArgument):
    default_message = "etcdserver: key not found"


class ValueProvided(InvalidArgument):
    default_message = "etcdserver: value is provided"


class LeaseProvided(InvalidArgument):
    default_message = "etcdserver: lease is provided"


class Compacted(ApiError):
    code = OUT_OF_RANGE
    default_message = "etcdserver: mvcc: required revision has been compacted"


class FutureRevision(ApiError):
    code = OUT_OF_RANGE
    default_message = "etcdserver: mvcc: required revision is a future revision"


class NoSpace(ApiError):
    code = RESOURCE_EXHAUSTED
    default_message = "etcdserver: mvcc: database space exceeded"


class CorruptCluster(ApiError):
    """Refused while the CORRUPT alarm is raised (a member's data differs from its peers')."""

    code = DATA_LOSS
    default_message = "etcdserver: corrupt cluster"


class ResponseTooLarge(ApiError):
    code = RESOURCE_EXHAUSTED
    default_message = "etcdserver: the response is too large"


class LeaseNotFound(ApiError):
    code = NOT_FOUND
    default_message = "etcdserver: requested lease not found"


class LeaseExists(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: lease already exists"


class NoLeader(ApiError):
    code = UNAVAILABLE
    default_message = "etcdserver: no leader"


class NotLeader(ApiError):
    """This member cannot serve the request; ``leader`` names the client URL to try."""

    code = UNAVAILABLE
    default_message = "etcdserver: not leader"


class TimedOut(ApiError):
    code = UNAVAILABLE
    default_message = "etcdserver: request timed out"


class ElectionNotLeader(ApiError):
    """A proclaim by a contender that is not (or no longer) the leader."""

    code = UNKNOWN
    default_message = "election: not leader"


class ElectionNoLeader(ApiError):
    code = UNKNOWN
    default_message = "election: no leader"


class SessionExpired(ApiError):
    """The key of a lock waiter or election candidate vanished (its lease expired or was
    revoked) before its turn came."""

    code = UNKNOWN
    default_message = "mutex: session is expired"


# -- auth (etcd's messages and codes) ---------------------------------------------------------


class RootUserNotExist(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: root user does not exist"


class RootRoleNotExist(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: root user does not have root role"


class UserAlreadyExist(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: user name already exists"


class UserEmpty(ApiError):
    code = INVALID_ARGUMENT
    default_message = "etcdserver: user name is empty"


class UserNotFound(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: user name not found"


class RoleAlreadyExist(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: role name already exists"


class RoleNotFound(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: role name not found"


class RoleEmpty(ApiError):
    code = INVALID_ARGUMENT
    default_message = "etcdserver: role name is empty"


class AuthFailed(ApiError):
    code = INVALID_ARGUMENT
    default_message = "etcdserver: authentication failed, invalid user ID or password"


class PermissionDenied(ApiError):
    code = PERMISSION_DENIED
    default_message = "etcdserver: permission denied"


class RoleNotGranted(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: role is not granted to the user"


class PermissionNotGranted(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: permission is not granted to the role"


class AuthNotEnabled(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: authentication is not enabled"


class InvalidAuthToken(ApiError):
    code = UNAUTHENTICATED
    default_message = "etcdserver: invalid auth token"


class AuthOldRevision(ApiError):
    """The auth state changed between the permission check and apply (etcd's
    ErrAuthOldRevision); a client gets a new token and asks again."""

    code = INVALID_ARGUMENT
    default_message = "etcdserver: revision of auth store is old"


class InvalidAuthMgmt(ApiError):
    code = INVALID_ARGUMENT
    default_message = "etcdserver: invalid auth management"


class MemberNotFound(ApiError):
    code = NOT_FOUND
    default_message = "etcdserver: member not found"


class NotEnoughStartedMembers(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: re-configuration failed due to not enough started members"


class PeerUrlExists(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: Peer URLs already exists"


class UnhealthyCluster(ApiError):
    code = UNAVAILABLE
    default_message = "etcdserver: unhealthy cluster"


class MemberNotLearner(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: can only promote a learner member"


class LearnerNotReady(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: can only promote a learner member which is in sync with leader"


class BadLeaderTransferee(ApiError):
    code = FAILED_PRECONDITION
    default_message = "etcdserver: bad leader transferee"


class UnknownMethod(ApiError):
    code = UNIMPLEMENTED
    default_message = "unknown method"


_CODE_NAMES = {
    OK: "OK",
    CANCELLED: "Canceled",
    UNKNOWN: "Unknown",
    INVALID_ARGUMENT: "InvalidArgument",
    DEADLINE_EXCEEDED: "DeadlineExceeded",
    NOT_FOUND: "NotFound",
    ALREADY_EXISTS: "AlreadyExists",
    PERMISSION_DENIED: "PermissionDenied",
    RESOURCE_EXHAUSTED: "ResourceExhausted",
    FAILED_PRECONDITION: "FailedPrecondition",
    ABORTED: "Aborted",
    OUT_OF_RANGE: "OutOfRange",
    UNIMPLEMENTED: "Unimplemented",
    INTERNAL: "Internal",
    UNAVAILABLE: "Unavailable",
    DATA_LOSS: "DataLoss",
    UNAUTHENTICATED: "Unauthenticated",
}


def code_name(code: int) -> str:
    """A gRPC status code's name as gRPC's libraries spell it ("InvalidArgument")."""
    return _CODE_NAMES.get(code, str(code))


def grpc_text(error: ApiError) -> str:
    """The error as a Go gRPC client prints it ("rpc error: code = ... desc = ...")."""
    return f"rpc error: code = {code_name(error.code)} desc = {error.message}"


_BY_MESSAGE: dict[str, type[ApiError]] = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, ApiError) and _cls is not ApiError:
        _BY_MESSAGE.setdefault(_cls.default_message, _cls)


def error_from_wire(code: int, message: str) -> ApiError:
    """Rebuild the most specific error class for a (code, message) read off the wire."""
    prefix = message.split(" (", 1)[0]
    cls = _BY_MESSAGE.get(prefix)
    if cls is None or cls.code != code:
        err = ApiError(message)
        err.code = code
        return err
    return cls(message)
