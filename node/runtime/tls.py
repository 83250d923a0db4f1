"""The HTTP API's TLS context, built and checked once at start.

HTTPS is on when ``tls_cert_file`` and ``tls_key_file`` are set: the HTTP port then
speaks TLS only (1.2 or later; Python's default cipher choice). With
``tls_client_ca_file`` the server also *asks* for a client certificate
(``CERT_OPTIONAL``): a client without one connects as usual, a certificate that does
not verify against those CAs fails the handshake, and a verified one is available to
``Authorization: Handle clientCert="true"`` (``node.auth.clientcert``). Asking at the
handshake, rather than by renegotiation as the reference does, is what TLS 1.3 allows
without post-handshake authentication, which common clients do not offer.

Unreadable or mismatched files stop the node with a SettingsError naming the setting,
before any port is opened.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from node.settings import Settings, SettingsError


def _readable(path: Path, key: str) -> None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise SettingsError(f"{key} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise SettingsError("tls_key_file is encrypted; give an unencrypted PEM private key")


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context, or None when HTTPS is not configured."""
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None or key is None:
        return None
    _readable(cert, "tls_cert_file")
    _readable(key, "tls_key_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as exc:
        raise SettingsError(
            f"tls_cert_file {str(cert)!r} and tls_key_file {str(key)!r} are not a PEM certificate "
            f"and its unencrypted private key ({exc.reason or exc})"
        ) from None
    if ca is not None:
        _readable(ca, "tls_client_ca_file")
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise SettingsError(
                f"tls_client_ca_file {str(ca)!r} holds no PEM CA certificate ({exc.reason or exc})"
            ) from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
