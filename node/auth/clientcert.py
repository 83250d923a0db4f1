"""Client-certificate authentication: ``Authorization: Handle clientCert="true"`` over TLS.

Two checks, the second as the reference makes it:

1. The TLS layer verified the certificate against ``tls_client_ca_file`` (the server asks
   for certificates with ``CERT_OPTIONAL``: one that fails verification fails the
   handshake, so a certificate that reaches us is CA-signed).
2. The subject names the admin, and the certificate's public key is one of that admin's
   HS_PUBKEY values in this node's registry. The reference's ``X509HSTrustManager``
   accepts a client certificate only when its key equals an HS_PUBKEY value of the
   identity it names (index 0: any of them; ``getIndexMatchingPublicKey`` then picks the
   index), so the registry stays the authority: removing the HS_PUBKEY value revokes
   the certificate without touching the CA.

Which subject attribute names the admin also follows the reference (``Rfc2253DnParser``):
the first UID, else CN, else O, in RFC 2253 order (most specific RDN first), holding
``index:handle`` (e.g. ``300:88.118.2/ADMIN``) or a bare handle (index 0).

A certificate is only used when the request asks for it: browsers send client
certificates on their own, and an ambient credential would let any page a logged-in
browser visits write with it.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from node.auth.challenge import is_pubkey
from node.auth.handleauth import is_handle_header, parse_admin_id, parse_handle_authorization
from node.auth.identity import (
    AuthContext,
    CredentialsRefused,
    CredentialsRejected,
    Identity,
    MalformedCredentials,
    MethodRefused,
)
from node.auth.pubkey import load_public_key, same_public_key
from protocol.errors import ProtocolError
from protocol.handle import normalise
from registry.store import Registry

PEERCERT_DER = "peercert_der"  # AuthContext.extra key: the verified peer certificate, DER


def subject_identity(cert: x509.Certificate) -> tuple[int, str] | None:
    """(index, handle) the certificate's subject names, or None."""
    for oid in (NameOID.USER_ID, NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        attrs = cert.subject.get_attributes_for_oid(oid)
        if attrs:
            value = attrs[-1].value  # RFC 2253 lists RDNs last-first
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            try:
                return parse_admin_id(text)
            except MalformedCredentials:
                return None
    return None


class ClientCertScheme:
    name = "client-cert"
    sends_secret = False  # nothing reusable crosses the wire; TLS is required anyway

    def __init__(self, registry: Registry, *, enabled: bool):
        self.registry = registry
        self.enabled = enabled  # tls_client_ca_file set: the TLS layer asks for certificates

    def claims(self, ctx: AuthContext) -> bool:
        header = ctx.authorization
        if not is_handle_header(header):
            return False
        assert header is not None
        try:
            return parse_handle_authorization(header).client_cert
        except MalformedCredentials:
            return False

    async def authenticate(self, ctx: AuthContext) -> Identity:
        if not ctx.secure:
            raise CredentialsRefused("client-certificate authentication needs HTTPS")
        if not self.enabled:
            raise MethodRefused(
                "this node does not ask for client certificates (tls_client_ca_file is unset)",
                "client_cert_disabled",
            )
        der = ctx.extra.get(PEERCERT_DER)
        if not der:
            raise CredentialsRejected("no client certificate was presented", "no_client_cert")
        try:
            cert = x509.load_der_x509_certificate(der)
            cert_key = cert.public_key()
        except (ValueError, TypeError):
            raise CredentialsRejected(
                "the client certificate cannot be read", "bad_client_cert"
            ) from None
        named = subject_identity(cert)
        if named is None:
            raise CredentialsRejected(
                "the client certificate's subject (UID, CN or O) names no index:handle",
                "no_cert_identity",
            )
        index, handle = named
        failure = f"client certificate for {index}:{handle} is not accepted"
        record = await self.registry.get_handle(normalise(handle))
        if record is None:
            raise CredentialsRejected(failure, "unknown_admin")
        for value in sorted(record.values, key=lambda v: v.index):
            if not is_pubkey(value.type) or index not in (0, value.index):
                continue
            try:
                key = load_public_key(value.data)
            except ProtocolError:
                continue
            if same_public_key(key, cert_key):  # type: ignore[arg-type]
                return Identity(record.handle, value.index, "client-cert")
        raise CredentialsRejected(
            failure + " (its key is not an HS_PUBKEY value of the admin)", "cert_key_mismatch"
        )
