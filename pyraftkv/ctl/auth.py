"""auth enable / disable / status, user ..., role ...: etcdctl's auth commands and output
(simple: etcdctl's sentences; json: the response message)."""

from __future__ import annotations

import contextlib

from ..client.requests import prefix_end
from ..errors import RoleAlreadyExist, RootRoleNotExist
from ..proto import auth_pb2 as authpb
from ..proto import rpc_pb2 as rpc
from .command import RESPONSE_FORMATS, command, group
from .errors import EXIT_BAD_ARGS, CtlError
from .flags import Flag
from .invocation import Invocation

group("auth", "Enable or disable authentication")
group("user", "User related commands")
group("role", "Role related commands")

_PERMISSIONS = {"READ": authpb.Permission.READ, "WRITE": authpb.Permission.WRITE}
_PERMISSIONS["READWRITE"] = authpb.Permission.READWRITE


async def _call(inv: Invocation, method: str, request, sentence: str = ""):
    """Make the call; print the sentence (simple) or the response (json, fields, protobuf)."""
    response = await (await inv.client()).call(method, request)
    if inv.settings.write_out != "simple":
        inv.printer.auth_response(response)
    elif sentence:
        inv.write(sentence)
    return response


def _response_command(*path: str, **kwargs):
    """A command whose answer etcdctl also shows in the fields and protobuf formats."""
    return command(*path, formats=RESPONSE_FORMATS, **kwargs)


def _args(inv: Invocation, count: int, message: str) -> list[str]:
    if len(inv.args) != count:
        raise CtlError(message, EXIT_BAD_ARGS)
    return inv.args


# -- auth -------------------------------------------------------------------------------------


@_response_command("auth", "enable", summary="Enables authentication")
async def auth_enable(inv: Invocation) -> None:
    """Enable auth; as etcdctl, give root the root role first when it lacks it."""
    _args(inv, 0, "auth enable command does not accept any arguments")
    client = await inv.client()
    try:
        await client.call("AuthEnable", rpc.AuthEnableRequest())
    except RootRoleNotExist:
        with contextlib.suppress(RoleAlreadyExist):
            await client.call("RoleAdd", rpc.AuthRoleAddRequest(name="root"))
        await client.call("UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await client.call("AuthEnable", rpc.AuthEnableRequest())
    inv.write("Authentication Enabled")


@_response_command("auth", "disable", summary="Disables authentication")
async def auth_disable(inv: Invocation) -> None:
    """Disable auth."""
    _args(inv, 0, "auth disable command does not accept any arguments")
    await (await inv.client()).call("AuthDisable", rpc.AuthDisableRequest())
    inv.write("Authentication Disabled")  # in every format, as etcdctl


@command("auth", "status", summary="Returns authentication status")
async def auth_status(inv: Invocation) -> None:
    """Whether auth is on, and the auth revision."""
    _args(inv, 0, "auth status command does not accept any arguments")
    response = await _call(inv, "AuthStatus", rpc.AuthStatusRequest())
    if inv.settings.write_out != "json":
        inv.write(f"Authentication Status: {str(response.enabled).lower()}")
        inv.write(f"AuthRevision: {response.authRevision}")


# -- user -------------------------------------------------------------------------------------

_INTERACTIVE = Flag(
    "interactive", "bool", True, "Read password from stdin instead of interactive terminal"
)


def _password(inv: Invocation, name: str) -> str:
    """The password from stdin (one line), as etcdctl reads it without a terminal."""
    line = inv.stdin.readline().decode().rstrip("\r\n")
    if not line:
        raise CtlError(f"password of {name} is empty", EXIT_BAD_ARGS)
    return line


@_response_command(
    "user",
    "add",
    summary="Adds a new user",
    usage="<user name or user:password> [options]",
    flags=(
        _INTERACTIVE,
        Flag("new-user-password", "str", "", "Supply password from the command line flag"),
    ),
)
async def user_add(inv: Invocation) -> None:
    """Add a user: name:password, --new-user-password, or the password on stdin."""
    (spec,) = _args(inv, 1, "user add command requires user name as its argument")
    name, sep, password = spec.partition(":")
    if not sep:
        password = inv.opts.new_user_password or _password(inv, name)
    request = rpc.AuthUserAddRequest(name=name, password=password)
    await _call(inv, "UserAdd", request, f"User {name} created")


@_response_command("user", "delete", summary="Deletes a user", usage="<user name>")
async def user_delete(inv: Invocation) -> None:
    """Delete a user."""
    (name,) = _args(inv, 1, "user delete command requires user name as its argument")
    await _call(inv, "UserDelete", rpc.AuthUserDeleteRequest(name=name), f"User {name} deleted")


@_response_command(
    "user",
    "get",
    summary="Gets detailed information of a user",
    usage="<user name> [options]",
    flags=(Flag("detail", "bool", False, "Show permissions of roles granted to the user"),),
)
async def user_get(inv: Invocation) -> None:
    """A user's roles (with --detail, each role's permissions)."""
    (name,) = _args(inv, 1, "user get command requires user name as its argument")
    client = await inv.client()
    if not inv.opts.detail:
        response = await _call(inv, "UserGet", rpc.AuthUserGetRequest(name=name))
        if inv.settings.write_out == "simple":
            inv.write(f"User: {name}")
            inv.write("Roles:" + "".join(f" {role}" for role in response.roles))
        return
    # etcdctl: the user's name, then each role as `role get` prints it in the format asked
    response = await client.call("UserGet", rpc.AuthUserGetRequest(name=name))
    inv.write(f"User: {name}")
    for role in response.roles:
        inv.write("")
        perms = await client.call("RoleGet", rpc.AuthRoleGetRequest(role=role))
        if inv.settings.write_out == "simple":
            _print_role(inv, role, perms)
        else:
            inv.printer.auth_response(perms)


@_response_command("user", "list", summary="Lists all users")
async def user_list(inv: Invocation) -> None:
    """Every user, one a line."""
    await _list(inv, "user", "UserList", rpc.AuthUserListRequest(), "users")


async def _list(inv: Invocation, what: str, method: str, request, field: str) -> None:
    """Every user or role name, one a line (simple), or the response (json)."""
    _args(inv, 0, f"{what} list command requires no arguments")
    response = await _call(inv, method, request)
    if inv.settings.write_out == "simple":
        for name in getattr(response, field):
            inv.write(name)


@_response_command(
    "user",
    "passwd",
    summary="Changes password of user",
    usage="<user name> [options]",
    flags=(_INTERACTIVE,),
)
async def user_passwd(inv: Invocation) -> None:
    """A new password (from stdin) for a user."""
    (name,) = _args(inv, 1, "user passwd command requires user name as its argument")
    request = rpc.AuthUserChangePasswordRequest(name=name, password=_password(inv, name))
    await _call(inv, "UserChangePassword", request, "Password updated")


@_response_command(
    "user", "grant-role", summary="Grants a role to a user", usage="<user name> <role name>"
)
async def user_grant_role(inv: Invocation) -> None:
    """Grant a role to a user."""
    user, role = _args(
        inv, 2, "user grant command requires user name and role name as its argument"
    )
    request = rpc.AuthUserGrantRoleRequest(user=user, role=role)
    await _call(inv, "UserGrantRole", request, f"Role {role} is granted to user {user}")


@_response_command(
    "user", "revoke-role", summary="Revokes a role from a user", usage="<user name> <role name>"
)
async def user_revoke_role(inv: Invocation) -> None:
    """Revoke a role from a user."""
    user, role = _args(inv, 2, "user revoke-role requires user name and role name as its argument")
    request = rpc.AuthUserRevokeRoleRequest(name=user, role=role)
    await _call(inv, "UserRevokeRole", request, f"Role {role} is revoked from user {user}")


# -- role -------------------------------------------------------------------------------------


@_response_command("role", "add", summary="Adds a new role", usage="<role name>")
async def role_add(inv: Invocation) -> None:
    """Add a role."""
    (name,) = _args(inv, 1, "role add command requires role name as its argument")
    await _call(inv, "RoleAdd", rpc.AuthRoleAddRequest(name=name), f"Role {name} created")


@_response_command("role", "delete", summary="Deletes a role", usage="<role name>")
async def role_delete(inv: Invocation) -> None:
    """Delete a role."""
    (name,) = _args(inv, 1, "role delete command requires role name as its argument")
    await _call(inv, "RoleDelete", rpc.AuthRoleDeleteRequest(role=name), f"Role {name} deleted")


@_response_command(
    "role", "get", summary="Gets detailed information of a role", usage="<role name>"
)
async def role_get(inv: Invocation) -> None:
    """A role's permissions, read and write."""
    (name,) = _args(inv, 1, "role get command requires role name as its argument")
    response = await _call(inv, "RoleGet", rpc.AuthRoleGetRequest(role=name))
    if inv.settings.write_out == "simple":
        _print_role(inv, name, response)


@_response_command("role", "list", summary="Lists all roles")
async def role_list(inv: Invocation) -> None:
    """Every role, one a line."""
    await _list(inv, "role", "RoleList", rpc.AuthRoleListRequest(), "roles")


_RANGE_FLAGS = (
    Flag("prefix", "bool", False, "grant a prefix permission"),
    Flag(
        "from-key",
        "bool",
        False,
        "grant a permission of keys that are greater than or equal to the given key using byte compare",  # noqa: E501
    ),
)


def _range_end(inv: Invocation, key: str, end: list[str]) -> bytes:
    if inv.opts.prefix and inv.opts.from_key:
        raise CtlError("--from-key and --prefix flags are mutually exclusive", EXIT_BAD_ARGS)
    if end and (inv.opts.prefix or inv.opts.from_key):
        raise CtlError("unexpected endkey argument with --prefix or --from-key", EXIT_BAD_ARGS)
    if inv.opts.prefix:
        return prefix_end(key.encode())
    if inv.opts.from_key:
        return b"\x00"
    return end[0].encode() if end else b""


@_response_command(
    "role",
    "grant-permission",
    summary="Grants a key to a role",
    usage="[options] <role name> <permission type> <key> [endkey]",
    flags=_RANGE_FLAGS,
)
async def role_grant_permission(inv: Invocation) -> None:
    """Grant read, write or readwrite on a key, a range, a prefix or keys from a key."""
    if len(inv.args) not in (3, 4):
        raise CtlError(
            "role grant command requires role name, permission type, and key [endkey] as its argument",  # noqa: E501
            EXIT_BAD_ARGS,
        )
    role, kind, key, *end = inv.args
    perm_type = _PERMISSIONS.get(kind.upper())
    if perm_type is None:
        raise CtlError(f"invalid permission type: {kind}", EXIT_BAD_ARGS)
    perm = authpb.Permission(
        permType=perm_type, key=key.encode(), range_end=_range_end(inv, key, end)
    )
    request = rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm)
    await _call(inv, "RoleGrantPermission", request, f"Role {role} updated")


@_response_command(
    "role",
    "revoke-permission",
    summary="Revokes a key from a role",
    usage="<role name> <key> [endkey]",
    flags=_RANGE_FLAGS,
)
async def role_revoke_permission(inv: Invocation) -> None:
    """Revoke the permission on exactly that key or range."""
    if len(inv.args) not in (2, 3):
        raise CtlError(
            "role revoke-permission command requires role name and key [endkey] as its argument",
            EXIT_BAD_ARGS,
        )
    role, key, *end = inv.args
    range_end = _range_end(inv, key, end)
    request = rpc.AuthRoleRevokePermissionRequest(role=role, key=key.encode(), range_end=range_end)
    if range_end:
        sentence = f"Permission of range [{key}, {range_end.decode()}) is revoked from role {role}"
    else:
        sentence = f"Permission of key {key} is revoked from role {role}"
    await _call(inv, "RoleRevokePermission", request, sentence)


def _print_role(inv: Invocation, name: str, response: rpc.AuthRoleGetResponse) -> None:
    """etcdctl's listing: the read, then the write permissions, one a line."""
    inv.write(f"Role {name}")
    for title, kinds in (
        ("KV Read:", (authpb.Permission.READ, authpb.Permission.READWRITE)),
        ("KV Write:", (authpb.Permission.WRITE, authpb.Permission.READWRITE)),
    ):
        inv.write(title)
        for perm in response.perm:
            if perm.permType in kinds:
                inv.write(_permission_text(perm))


def _permission_text(perm: authpb.Permission) -> str:
    key, end = perm.key.decode(errors="replace"), perm.range_end.decode(errors="replace")
    if not perm.range_end:
        return f"\t{key}"
    text = f"\t[{key}, {end})" if end != "\x00" else f"\t[{key}, <open ended>"
    if prefix_end(perm.key) == perm.range_end:
        text += f" (prefix {key})"
    return text
