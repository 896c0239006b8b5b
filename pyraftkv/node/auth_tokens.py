"""Auth tokens as etcd's --auth-token gives them.

``simple``: a random string naming a user, valid while used at least once per TTL
(--auth-token-ttl). Authenticate puts it through the log, so every member knows it; as
etcd's, it ends in ".<index of that log entry>", and a member that has not applied that
entry yet waits for it before judging the token (a token from one member works on any
other at once).
``jwt,pub-key=...,priv-key=...,sign-method=RS256|ES256...[,ttl=5m]``: a JSON web token
signed with the private key (PyJWT), checked with the public key by any member, no state.
"""

from __future__ import annotations

import secrets
import string
import time

from .. import errors
from .config import ConfigError, parse_duration

_LETTERS = string.ascii_letters
JWT_METHODS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class SimpleTokens:
    """Simple tokens: token -> (user, expiry) on each member."""

    replicated = True  # handed out through the log

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._tokens: dict[str, tuple[str, float]] = {}

    def new(self, user: str, revision: int) -> str:
        """The random part; the member applying the grant appends ".<its index>"."""
        return "".join(secrets.choice(_LETTERS) for _ in range(16))

    @staticmethod
    def index_of(token: str) -> int:
        """The log index a token was granted at (0 if it names none)."""
        _, _, index = token.rpartition(".")
        return int(index) if index.isdigit() and len(index) < 20 else 0

    def add(self, token: str, user: str) -> None:
        self._expire()
        self._tokens[token] = (user, time.monotonic() + self.ttl_s)

    def info(self, token: str, revision: int) -> tuple[str, int]:
        """The token's user and the auth revision the request is checked at: ``revision``,
        the member's current one, as etcd's simple tokens (the TTL starts again);
        InvalidAuthToken if unknown or expired."""
        found = self._tokens.get(token)
        now = time.monotonic()
        if found is None or found[1] < now:
            self._tokens.pop(token, None)
            raise errors.InvalidAuthToken()
        self._tokens[token] = (found[0], now + self.ttl_s)
        return found[0], revision

    def forget_user(self, user: str) -> None:
        """Drop the user's tokens (deleted, or a new password)."""
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] != user}

    def clear(self) -> None:
        self._tokens.clear()

    def _expire(self) -> None:
        if len(self._tokens) > 4096:
            now = time.monotonic()
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] >= now}


class JwtTokens:
    """Signed JSON web tokens (claims: username, revision, exp)."""

    replicated = False

    def __init__(self, private_key: bytes | None, public_key: bytes, method: str, ttl_s: float):
        import jwt  # PyJWT

        self._jwt = jwt
        self.private_key, self.public_key = private_key, public_key
        self.method, self.ttl_s = method, ttl_s

    @staticmethod
    def index_of(token: str) -> int:
        return 0  # checked by signature alone

    def new(self, user: str, revision: int) -> str:
        if self.private_key is None:
            raise errors.AuthFailed("etcdserver: this member has no private key to sign tokens")
        claims = {"username": user, "revision": revision, "exp": int(time.time() + self.ttl_s)}
        return self._jwt.encode(claims, self.private_key, algorithm=self.method)

    def info(self, token: str, revision: int) -> tuple[str, int]:
        """The token's user and the auth revision it was signed at (its claim, as etcd's
        JWT tokens: after any auth change, requests with it fail with "revision of auth
        store is old" until the client authenticates again)."""
        try:
            claims = self._jwt.decode(token, self.public_key, algorithms=[self.method])
        except self._jwt.PyJWTError:
            raise errors.InvalidAuthToken() from None
        user, signed_at = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or not user or type(signed_at) is not int:
            raise errors.InvalidAuthToken()
        return user, signed_at

    def add(self, token: str, user: str) -> None:
        pass

    def forget_user(self, user: str) -> None:
        pass  # a signed token stays valid until it expires, as etcd's

    def clear(self) -> None:
        pass


def token_provider(spec: str, ttl_s: float) -> SimpleTokens | JwtTokens:
    """The provider --auth-token describes; ConfigError when it cannot be used."""
    kind, _, rest = spec.partition(",")
    if kind == "simple" and not rest:
        return SimpleTokens(ttl_s)
    if kind != "jwt":
        raise ConfigError(f"--auth-token: {spec!r} is not 'simple' or 'jwt,...'")
    options = {}
    for item in rest.split(","):
        name, sep, value = item.partition("=")
        if not sep or name not in ("pub-key", "priv-key", "sign-method", "ttl"):
            raise ConfigError(f"--auth-token: unknown jwt option {item!r}")
        options[name] = value
    method = options.get("sign-method", "")
    if method not in JWT_METHODS:
        raise ConfigError(f"--auth-token: sign-method must be one of {', '.join(JWT_METHODS)}")
    if "pub-key" not in options:
        raise ConfigError("--auth-token: jwt needs pub-key=<file>")
    try:
        with open(options["pub-key"], "rb") as f:
            public = f.read()
        private = None
        if "priv-key" in options:
            with open(options["priv-key"], "rb") as f:
                private = f.read()
    except OSError as exc:
        raise ConfigError(f"--auth-token: {exc}") from exc
    ttl = parse_duration(options["ttl"], "--auth-token ttl") if "ttl" in options else 300.0
    return JwtTokens(private, public, method, ttl)
