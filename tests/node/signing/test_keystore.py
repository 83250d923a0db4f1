"""Signing keys at rest: encrypted, private, rotatable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.signing.keystore import KeyStore, KeyStoreError, ensure_passphrase_file, read_passphrase
from protocol.jose import jws_parse, jws_sign, jws_verify

PASS = b"correct horse battery"


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_generate_sign_and_verify(tmp_path: Path, alg: str) -> None:
    store = KeyStore(tmp_path / "keys", PASS)
    info = store.generate(alg, now=1_800_000_000)
    assert info.current and store.current() == info
    key = store.signing_key()
    token = jws_sign({"sub": "88.118.2/X"}, key)
    assert jws_verify(jws_parse(token), key.private_key.public_key())
    pem = (tmp_path / "keys" / f"{info.kid}.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem  # never stored in clear
    assert PASS not in pem


def test_files_are_private_and_refused_when_not(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", PASS)
    info = store.generate("ES256", now=1)
    path = tmp_path / "keys" / f"{info.kid}.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        store.signing_key()


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    KeyStore(tmp_path / "keys", PASS).generate("ES256", now=1)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        KeyStore(tmp_path / "keys", b"not the passphrase").signing_key()


def test_rotation_keeps_old_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", PASS)
    old = store.generate("ES256", now=1)
    new = store.generate("RS256", now=2)
    assert store.current().kid == new.kid
    assert [k.kid for k in store.keys()] == [old.kid, new.kid]  # noqa: SIM118 (a method)
    assert store.signing_key(old.kid).alg == "ES256"  # still usable for verification
    assert "passphrase" not in repr(store) and PASS.decode() not in repr(store)


def test_passphrase_sources(tmp_path: Path) -> None:
    assert (
        read_passphrase({"IDNODE_KEY_PASSPHRASE": "s3cret-pass"}, "IDNODE_KEY_PASSPHRASE", None)
        == b"s3cret-pass"
    )
    with pytest.raises(KeyStoreError, match="missing or shorter"):
        read_passphrase({}, "IDNODE_KEY_PASSPHRASE", None)
    f = ensure_passphrase_file(tmp_path / "passphrase")
    assert f.stat().st_mode & 0o777 == 0o600
    assert len(read_passphrase({}, "X", f)) >= 32
    assert ensure_passphrase_file(f).read_bytes() == f.read_bytes()  # made once
    os.chmod(f, 0o640)
    with pytest.raises(KeyStoreError, match="readable by others"):
        read_passphrase({}, "X", f)
