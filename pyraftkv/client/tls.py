"""How a client speaks TLS to the members: the CA that signed their certificates, this
client's own certificate (for members that require one; its common name is the user name
when they run with --client-cert-auth and auth on), and the name to expect."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TLS:
    """TLS options of ``Client(..., tls=TLS(...))`` and ``AsyncClient``.

    ``ca_file``: verify the members' certificates with this CA (default: the system's).
    ``cert_file``/``key_file``: present this certificate. ``server_name``: expect this
    name in the members' certificates instead of the endpoint's host.
    ``insecure_skip_verify``: encrypt but accept any server certificate (for testing).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("TLS: cert_file and key_file must be given together")

    def context(self) -> ssl.SSLContext:
        """A TLS 1.2+ client context; raises ssl.SSLError/OSError on unusable files."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def client_context(tls: TLS | ssl.SSLContext | bool | None, endpoints) -> ssl.SSLContext | None:
    """The context for ``tls`` (True: TLS()); with none given, TLS() when an endpoint is
    an https:// URL, else plaintext (None)."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True or (tls is None and any(e.startswith("https://") for e in endpoints)):
        tls = TLS()
    return tls.context() if isinstance(tls, TLS) else None
