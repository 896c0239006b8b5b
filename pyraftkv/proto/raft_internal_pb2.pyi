from pyraftkv.proto import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InternalRequest(_message.Message):
    __slots__ = ("member", "id", "method", "body", "user", "auth_revision")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    AUTH_REVISION_FIELD_NUMBER: _ClassVar[int]
    member: int
    id: int
    method: int
    body: bytes
    user: str
    auth_revision: int
    def __init__(self, member: _Optional[int] = ..., id: _Optional[int] = ..., method: _Optional[int] = ..., body: _Optional[bytes] = ..., user: _Optional[str] = ..., auth_revision: _Optional[int] = ...) -> None: ...

class AuthTokenGrant(_message.Message):
    __slots__ = ("user", "token", "revision")
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    user: str
    token: str
    revision: int
    def __init__(self, user: _Optional[str] = ..., token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class AuthState(_message.Message):
    __slots__ = ("enabled", "revision", "users", "roles")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    revision: int
    users: _containers.RepeatedCompositeFieldContainer[_auth_pb2.User]
    roles: _containers.RepeatedCompositeFieldContainer[_auth_pb2.Role]
    def __init__(self, enabled: _Optional[bool] = ..., revision: _Optional[int] = ..., users: _Optional[_Iterable[_Union[_auth_pb2.User, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[_auth_pb2.Role, _Mapping]]] = ...) -> None: ...

class RequestBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[InternalRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[InternalRequest, _Mapping]]] = ...) -> None: ...

class MemberAttributes(_message.Message):
    __slots__ = ("id", "name", "peer_urls", "client_urls", "is_learner")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_URLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    IS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    peer_urls: _containers.RepeatedScalarFieldContainer[str]
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    is_learner: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., peer_urls: _Optional[_Iterable[str]] = ..., client_urls: _Optional[_Iterable[str]] = ..., is_learner: _Optional[bool] = ...) -> None: ...

class MemberAttributesList(_message.Message):
    __slots__ = ("members", "removed")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[MemberAttributes]
    removed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, members: _Optional[_Iterable[_Union[MemberAttributes, _Mapping]]] = ..., removed: _Optional[_Iterable[int]] = ...) -> None: ...
