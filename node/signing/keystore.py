"""The node's record-signing keys, encrypted at rest.

Layout of the key directory (mode 0700):
  keys.json          index: every key's kid, algorithm, creation time; which is current
  <kid>.pem          PKCS#8 private key encrypted with the passphrase (mode 0600)
  <kid>.cert         the HS_CERT token certifying this key (from the trust root)
  root.pem           the embedded default's self-signed root key (encrypted, 0600)
  secrets.key        the key HS_SECKEY values are sealed with in the registry (wrapped, 0600)

The passphrase comes from an environment variable or a file, never from settings
files or the command line, and is never logged. A key file readable by group or others
is refused rather than used. Rotation adds a key and makes it current; older keys stay
so records signed with them verify until ``idnode resign`` has re-signed them.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.errors import NodeError
from node.settings import Settings
from protocol.jose import SIGNING_ALGS, SigningKey, alg_for_key

INDEX = "keys.json"
SECRETS_KEY_FILE = "secrets.key"
_KEK_MAGIC = b"IDKEK1"
_KEK_AAD = b"idnode secrets key"
PASSPHRASE_ENV = "IDNODE_KEY_PASSPHRASE"
PRIVATE_MODE = 0o600


class KeyStoreError(NodeError):
    """A signing key cannot be created, read or used; the message says why."""


_GENERATORS: dict[str, Callable[[], Any]] = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    created: int  # unix seconds
    current: bool


def read_passphrase(
    env: dict[str, str] | os._Environ[str], env_name: str, file: Path | None
) -> bytes:
    """The key passphrase from ``env_name`` or from ``file`` (which must be private)."""
    if file is not None:
        _check_private(file, "passphrase file")
        try:
            value = file.read_bytes().strip()
        except OSError as exc:
            raise KeyStoreError(f"cannot read passphrase file {file}: {exc.strerror}") from None
    else:
        value = env.get(env_name, "").encode()
    if len(value) < 8:
        where = f"file {file}" if file is not None else f"environment variable {env_name}"
        raise KeyStoreError(f"the key passphrase ({where}) is missing or shorter than 8 characters")
    return value


def ensure_passphrase_file(path: Path) -> Path:
    """For the embedded default only: a random passphrase in a 0600 file, made once, so
    signing works out of the box. Deployments point at their own secret instead."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path


def _check_private(path: Path, what: str) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyStoreError(f"{what} {path} does not exist") from None
    if mode & 0o077:
        raise KeyStoreError(f"{what} {path} is readable by others (mode {mode:03o}); chmod 600 it")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class KeyStore:
    def __init__(self, directory: Path, passphrase: bytes):
        self.directory = directory
        self._passphrase = passphrase

    def __repr__(self) -> str:  # never show the passphrase
        return f"KeyStore({str(self.directory)!r})"

    # -- index -----------------------------------------------------------------------

    def _index(self) -> dict[str, Any]:
        path = self.directory / INDEX
        if not path.exists():
            return {"current": None, "keys": []}
        try:
            data: dict[str, Any] = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise KeyStoreError(f"{path} is corrupt: {exc}") from None
        return data

    def _save_index(self, index: dict[str, Any]) -> None:
        _write_private(self.directory / INDEX, orjson.dumps(index, option=orjson.OPT_INDENT_2))

    def keys(self) -> list[KeyInfo]:
        index = self._index()
        return [
            KeyInfo(k["kid"], k["alg"], k["created"], k["kid"] == index["current"])
            for k in index["keys"]
        ]

    def current(self) -> KeyInfo:
        for info in self.keys():
            if info.current:
                return info
        raise KeyStoreError(f"no signing key in {self.directory}; run: idnode keys generate")

    # -- keys ------------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & 0o077:
            raise KeyStoreError(
                f"key directory {self.directory} is open to others (mode {mode:03o}); chmod 700 it"
            )

    def _encrypt(self, key: Any) -> bytes:
        pem: bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        return pem

    def _load(self, path: Path) -> Any:
        _check_private(path, "key file")
        try:
            return serialization.load_pem_private_key(path.read_bytes(), password=self._passphrase)
        except (ValueError, TypeError):
            raise KeyStoreError(f"cannot decrypt {path}: wrong passphrase or not a key") from None

    def generate(self, alg: str, now: int, *, make_current: bool = True) -> KeyInfo:
        if alg not in SIGNING_ALGS:
            raise KeyStoreError(f"algorithm {alg!r} is not one of {', '.join(SIGNING_ALGS)}")
        self._prepare_dir()
        index = self._index()
        kid = f"k{now}-{secrets.token_hex(3)}"
        _write_private(self.directory / f"{kid}.pem", self._encrypt(_GENERATORS[alg]()))
        index["keys"].append({"kid": kid, "alg": alg, "created": now})
        if make_current or index["current"] is None:
            index["current"] = kid
        self._save_index(index)
        return KeyInfo(kid, alg, now, index["current"] == kid)

    def signing_key(self, kid: str | None = None) -> SigningKey:
        info = (
            self.current() if kid is None else next((k for k in self.keys() if k.kid == kid), None)
        )
        if info is None:
            raise KeyStoreError(f"no key {kid!r} in {self.directory}")
        key = self._load(self.directory / f"{info.kid}.pem")
        return SigningKey(key, info.alg, info.kid)  # type: ignore[arg-type]

    def public_pem(self, kid: str | None = None) -> bytes:
        key = self.signing_key(kid).private_key
        pem: bytes = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    # -- certificates and the embedded root ---------------------------------------------

    def cert(self, kid: str) -> str | None:
        path = self.directory / f"{kid}.cert"
        return path.read_text(encoding="ascii").strip() if path.exists() else None

    def store_cert(self, kid: str, token: str) -> None:
        self._prepare_dir()
        _write_private(self.directory / f"{kid}.cert", token.encode("ascii"))

    def root_key(self, alg: str = "ES256") -> SigningKey:
        """The embedded default's self-signed root, made on first use."""
        path = self.directory / "root.pem"
        if not path.exists():
            self._prepare_dir()
            _write_private(path, self._encrypt(_GENERATORS[alg]()))
        key = self._load(path)
        return SigningKey(key, alg_for_key(key), "root")

    # -- the secrets key (HS_SECKEY values at rest) ------------------------------------------

    def secrets_key(self) -> bytes:
        """The 256-bit key HS_SECKEY values are sealed with in the registry (made on first
        use). It never enters the database: nodes sharing a registry share this key
        directory, as they share the signing keys. On disk it is wrapped with AES-GCM
        under a key derived from the passphrase (scrypt)."""
        path = self.directory / SECRETS_KEY_FILE
        if not path.exists():
            self._prepare_dir()
            salt, nonce, kek = (
                secrets.token_bytes(16),
                secrets.token_bytes(12),
                secrets.token_bytes(32),
            )
            wrapped = AESGCM(self._wrapping_key(salt)).encrypt(nonce, kek, _KEK_AAD)
            _write_private(path, _KEK_MAGIC + salt + nonce + wrapped)
            return kek
        _check_private(path, "secrets key file")
        data = path.read_bytes()
        if not data.startswith(_KEK_MAGIC) or len(data) != len(_KEK_MAGIC) + 16 + 12 + 48:
            raise KeyStoreError(f"{path} is not an idnode secrets key file")
        salt, nonce, wrapped = data[6:22], data[22:34], data[34:]
        try:
            return AESGCM(self._wrapping_key(salt)).decrypt(nonce, wrapped, _KEK_AAD)
        except InvalidTag:
            raise KeyStoreError(f"cannot decrypt {path}: wrong passphrase") from None

    def _wrapping_key(self, salt: bytes) -> bytes:
        return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(self._passphrase)


def open_key_store(settings: Settings, env: Mapping[str, str] | None = None) -> KeyStore:
    """The key store in ``<data_dir>/keys`` with the configured passphrase."""
    env = os.environ if env is None else env
    file = settings.key_passphrase_file
    if file is None and not env.get(PASSPHRASE_ENV):
        file = ensure_passphrase_file(settings.data_dir / "keys.passphrase")
    return KeyStore(settings.data_dir / "keys", read_passphrase(dict(env), PASSPHRASE_ENV, file))
