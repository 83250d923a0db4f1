"""RecordSigner without a node: naming scheme, perms limited to the node prefix, expiry,
the deployment certificate, and the key store wiring (node.signing.signer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from node.settings import load_settings
from node.signing.keystore import KeyStoreError
from node.signing.signer import (
    NODE_CERT_INDEX,
    RecordSigner,
    build_signer,
    handle_node_prefix,
)
from node.signing.trust import trust_roots
from protocol.certs import CertPerm, Perm, make_cert
from protocol.jose import SigningKey
from protocol.recordsig import verify_record
from protocol.sigreport import Problem
from protocol.values import HandleValue

NOW = 1_800_000_000
YEAR = 31_536_000
VALUES = (
    HandleValue(1, "URL", b"https://example.com/roll"),
    HandleValue(2, "EMAIL", b"qa@example.com"),
)


def _key() -> SigningKey:
    return SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))


def _certs(signer: RecordSigner, prefix: str) -> dict[str, str]:
    return {f"{v.index}:0.NA/{prefix}": v.data.decode() for v in signer.cert_values(prefix, NOW)}


def test_node_prefix_of_handles() -> None:
    assert handle_node_prefix("88.118.2/ROLL-1") == "88.118"
    assert handle_node_prefix("88.118/ADMIN") == "88.118"
    assert handle_node_prefix("0.NA/88.118.2") == "88.118"


def test_signed_record_verifies_with_the_published_chain() -> None:
    signer = RecordSigner(_key(), 2 * YEAR, root_key=_key())
    signed = signer.sign("88.118.2/ROLL-1", VALUES, NOW)
    assert signed is not None
    report = verify_record(
        "88.118.2/ROLL-1",
        signed,
        certs=_certs(signer, "88.118"),
        roots=[signer.root_public],
        now=NOW + 5,
    )  # type: ignore[list-item]
    assert report.ok, report.render()
    assert report.signer == "400:0.NA/88.118"
    assert signer.cert_values("88.118.2", NOW) == ()  # enterprise prefixes carry no certs


def test_a_cert_for_another_prefix_is_wrong_perms() -> None:
    root = _key()
    signer = RecordSigner(_key(), 2 * YEAR, root_key=root)
    other = _key()
    # A key certified for 88.119 (by the same trusted root) signs an 88.118.2 record.
    cert = make_cert(
        root,
        "401:0.NA/88.119",
        "400:0.NA/88.119",
        other.public_key,
        [
            CertPerm("0.NA/88.119", Perm.DERIVED_PREFIXES),
            CertPerm("0.NA/88.119", Perm.HANDLES_UNDER_THIS_PREFIX),
        ],
        now=NOW,
        lifetime_s=YEAR,
    )
    certs = {**_certs(signer, "88.119"), "400:0.NA/88.119": cert}
    rogue = RecordSigner(other, YEAR, deployment_cert=cert)
    assert rogue.sign("88.118.2/ROLL-1", VALUES, NOW) is None  # it refuses to sign outside 88.119
    from protocol.recordsig import with_signature

    signed = with_signature(
        "88.118.2/ROLL-1", VALUES, other, "400:0.NA/88.119", now=NOW, lifetime_s=YEAR
    )
    report = verify_record("88.118.2/ROLL-1", signed, certs=certs, roots=[root.public_key], now=NOW)
    assert not report.ok
    assert Problem.WRONG_PERMS in report.reasons()


def test_expired_signature_and_certs_fail_the_chain() -> None:
    signer = RecordSigner(_key(), YEAR, root_key=_key())
    signed = signer.sign("88.118.2/ROLL-1", VALUES, NOW)
    assert signed is not None
    later = NOW + 3 * YEAR  # past the signature (1 y) and certificates (2 y)
    report = verify_record(
        "88.118.2/ROLL-1",
        signed,
        certs=_certs(signer, "88.118"),
        roots=[signer.root_public],
        now=later,
    )  # type: ignore[list-item]
    assert not report.ok
    assert Problem.EXPIRED in report.reasons()
    assert "expired" in report.render()


def test_build_signer_creates_keys_once_and_deployment_cert(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, flags={"data_dir": str(tmp_path / "d"), "signing_alg": "EdDSA"}
    )
    first = build_signer(settings, NOW, env={})
    second = build_signer(settings, NOW, env={})
    assert first.key.alg == "EdDSA" and first.key.kid == second.key.kid
    assert (tmp_path / "d" / "keys.passphrase").stat().st_mode & 0o777 == 0o600
    assert trust_roots(settings, env={})  # the embedded root, now that it exists

    # A deployment: the top-level node certifies our key; its key is the trust root.
    top = _key()
    cert = make_cert(
        top,
        "300:0.NA/88",
        f"{NODE_CERT_INDEX}:0.NA/88.118",
        first.key.public_key,
        [CertPerm("0.NA/88.118", Perm.DERIVED_PREFIXES)],
        now=NOW,
        lifetime_s=YEAR,
    )
    (tmp_path / "node.cert").write_text(cert)
    deployed = load_settings(
        env={},
        flags={"data_dir": str(tmp_path / "d"), "signing_cert_file": str(tmp_path / "node.cert")},
    )
    signer = build_signer(deployed, NOW, env={})
    signed = signer.sign("88.118.2/X", VALUES, NOW)
    assert signed is not None
    certs = {f"{v.index}:0.NA/88.118": v.data.decode() for v in signer.cert_values("88.118", NOW)}
    report = verify_record("88.118.2/X", signed, certs=certs, roots=[top.public_key], now=NOW)
    assert report.ok, report.render()

    # A certificate for some other key is refused at start.
    stranger = make_cert(
        top, "300:0.NA/88", "400:0.NA/88.118", _key().public_key, [], now=NOW, lifetime_s=YEAR
    )
    (tmp_path / "node.cert").write_text(stranger)
    with pytest.raises(KeyStoreError, match="another key"):
        build_signer(deployed, NOW, env={})


def test_passphrase_from_environment(tmp_path: Path) -> None:
    settings = load_settings(env={}, flags={"data_dir": str(tmp_path / "d")})
    build_signer(settings, NOW, env={"IDNODE_KEY_PASSPHRASE": "a long enough passphrase"})
    assert not (tmp_path / "d" / "keys.passphrase").exists()
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        build_signer(settings, NOW, env={"IDNODE_KEY_PASSPHRASE": "another passphrase!"})
