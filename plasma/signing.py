"""Ed25519 keys for signing instruction packets (compiler) and checking them (edge runtime). Torch-free.

Key files may be PEM (PKCS#8 private / SubjectPublicKeyInfo public, what `openssl genpkey -algorithm ed25519`
writes), the 32 raw key bytes, or those 32 bytes in base64 on one line. A key's id is the first 16 hex digits
of the sha256 of its 32 raw public bytes; packets name the key that signed them by this id.

    python -m plasma.signing generate PATH   create a private key file (0600) unless PATH exists; print its public half
    python -m plasma.signing public PATH     print the public half (base64) and id of a private or public key file

Verification, the only thing a device does, goes through the OpenSSL libcrypto that Python's own hashlib has
already loaded (EVP_DigestVerify with an Ed25519 key), so the edge runtime pays no memory for a second crypto
library; `cryptography` is the fallback where that libcrypto cannot be found, and does all private-key work
(signing, key generation, PEM private keys), imported only then.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import functools
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

ALGORITHM = "ed25519"
RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# DER SubjectPublicKeyInfo of an Ed25519 key is this fixed prefix followed by the 32 key bytes (RFC 8410).
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_EVP_PKEY_ED25519 = 1087  # NID_ED25519


class SigningKeyError(ValueError):
    """A key that cannot be read; the message says where and why."""


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class VerifyingKey:
    """A trusted public key."""

    raw: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    def verify(self, signature: bytes, message: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES or len(self.raw) != RAW_KEY_BYTES:
            return False
        openssl = _libcrypto()
        if openssl is not None:
            return _verify_openssl(openssl, self.raw, signature, message)
        return _verify_cryptography(self.raw, signature, message)


@functools.cache
def _libcrypto() -> ctypes.CDLL | None:
    """The libcrypto this process already maps for hashlib (no second copy in memory), if it has Ed25519."""
    import _hashlib  # noqa: F401 - makes sure Python's own libcrypto is loaded

    path = None
    try:
        with open("/proc/self/maps") as maps:
            path = next((m.group(0) for line in maps if (m := re.search(r"/\S*/libcrypto\.so[.\d]*$", line))), None)
    except OSError:
        pass
    if path is None:
        from ctypes import util

        path = util.find_library("crypto")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.EVP_PKEY_new_raw_public_key.restype = ctypes.c_void_p
        lib.EVP_PKEY_new_raw_public_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.EVP_PKEY_free.argtypes = [ctypes.c_void_p]
        lib.EVP_MD_CTX_new.restype = ctypes.c_void_p
        lib.EVP_MD_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_DigestVerifyInit.restype = ctypes.c_int
        lib.EVP_DigestVerifyInit.argtypes = [ctypes.c_void_p] * 5
        lib.EVP_DigestVerify.restype = ctypes.c_int
        lib.EVP_DigestVerify.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                         ctypes.c_size_t]
        lib.ERR_clear_error.argtypes = []
    except (OSError, AttributeError):  # no such library, or one without the EVP raw-key API (OpenSSL < 1.1.1)
        return None
    return lib


def _verify_openssl(lib: ctypes.CDLL, public_raw: bytes, signature: bytes, message: bytes) -> bool:
    key = lib.EVP_PKEY_new_raw_public_key(_EVP_PKEY_ED25519, None, public_raw, len(public_raw))
    context = lib.EVP_MD_CTX_new() if key else None
    try:
        if not key or not context or lib.EVP_DigestVerifyInit(context, None, None, None, key) != 1:
            raise SigningKeyError("OpenSSL could not set up an Ed25519 verification")
        return bool(lib.EVP_DigestVerify(context, signature, len(signature), message, len(message)) == 1)
    finally:
        if context:
            lib.EVP_MD_CTX_free(context)
        if key:
            lib.EVP_PKEY_free(key)
        lib.ERR_clear_error()  # a failed check leaves errors queued, which hashlib and ssl would trip over


def _verify_cryptography(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except InvalidSignature:
        return False
    return True


class SigningKey:
    """A private key; `public` is the half to hand to devices. Needs the `cryptography` package."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = VerifyingKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> SigningKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        text = data.strip()
        try:
            if text.startswith(b"-----BEGIN"):
                private = serialization.load_pem_private_key(text, password=None)
                if not isinstance(private, ed25519.Ed25519PrivateKey):
                    raise SigningKeyError(f"{where}: PEM key is {type(private).__name__}, "
                                          "expected an ed25519 private key")
                return cls(private)
            raw = data if len(data) == RAW_KEY_BYTES else base64.b64decode(text, validate=True)
        except (ValueError, TypeError, binascii.Error) as exc:
            if isinstance(exc, SigningKeyError):
                raise
            raise SigningKeyError(f"{where}: not an ed25519 private key (PEM, 32 raw bytes or base64): {exc}") from exc
        if len(raw) != RAW_KEY_BYTES:
            raise SigningKeyError(f"{where}: an ed25519 private key is {RAW_KEY_BYTES} bytes, got {len(raw)}")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_file(cls, path: Path) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc}") from exc
        return cls.from_bytes(data, str(path))


def write_private_key(path: Path, key: SigningKey) -> None:
    """Writes a new private key file readable by its owner only; refuses to replace an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_pem())
        handle.flush()
        os.fsync(handle.fileno())


def load_or_create(path: Path) -> tuple[SigningKey, bool]:
    """The private key at `path`, created first if the file does not exist; (key, created)."""
    if path.exists():
        return SigningKey.from_file(path), False
    key = SigningKey.generate()
    try:
        write_private_key(path, key)
    except FileExistsError:  # another process created it first: use theirs
        return SigningKey.from_file(path), False
    return key, True


DEV_KEY_FILE = "compiler-ed25519.pem"


def dev_key_env(directory: Path) -> dict[str, str]:
    """Environment for a compiler and an edge runtime started together (local stacks, demos): one key pair
    kept in `directory` (created on first use, reused after, so a restarted stack trusts its stored packets),
    the private half for the compiler, the public half for the edge."""
    path = directory / DEV_KEY_FILE
    key, _ = load_or_create(path)
    return {"PLASMA_COMPILER_SIGNING_KEY": str(path), "PLASMA_EDGE_TRUSTED_KEYS": key.public.base64}


def public_key_from_bytes(data: bytes, where: str) -> VerifyingKey:
    """A public key from PEM (SubjectPublicKeyInfo), 32 raw bytes or base64; a private key file gives its public
    half (that needs `cryptography`)."""
    text = data.strip()
    if text.startswith(b"-----BEGIN PRIVATE KEY"):
        return SigningKey.from_bytes(text, where).public
    try:
        if text.startswith(b"-----BEGIN PUBLIC KEY-----"):
            body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
            der = base64.b64decode(body, validate=True)
            if len(der) != len(_SPKI_PREFIX) + RAW_KEY_BYTES or not der.startswith(_SPKI_PREFIX):
                raise SigningKeyError(f"{where}: PEM public key is not an ed25519 key")
            raw = der[len(_SPKI_PREFIX):]
        elif text.startswith(b"-----BEGIN"):
            raise SigningKeyError(f"{where}: expected an ed25519 PUBLIC KEY or PRIVATE KEY PEM block")
        else:
            raw = data if len(data) == RAW_KEY_BYTES else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        if isinstance(exc, SigningKeyError):
            raise
        raise SigningKeyError(f"{where}: not an ed25519 public key (PEM, 32 raw bytes or base64): {exc}") from exc
    if len(raw) != RAW_KEY_BYTES:
        raise SigningKeyError(f"{where}: an ed25519 public key is {RAW_KEY_BYTES} bytes, got {len(raw)}")
    return VerifyingKey(raw)


def parse_trusted_keys(spec: str, where: str = "trusted keys") -> dict[str, VerifyingKey]:
    """Comma-separated entries, each a key file path or a base64 public key; returns {key id: key}."""
    keys: dict[str, VerifyingKey] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        path = Path(entry).expanduser()
        if path.is_file():
            try:
                key = public_key_from_bytes(path.read_bytes(), f"{where} file {path}")
            except OSError as exc:
                raise SigningKeyError(f"{where}: cannot read {path}: {exc}") from exc
        else:
            try:
                key = public_key_from_bytes(entry.encode(), f"{where} entry {entry!r}")
            except SigningKeyError as exc:
                raise SigningKeyError(f"{where}: {entry!r} is neither an existing key file nor a base64 "
                                      f"ed25519 public key ({exc})") from exc
        keys[key.key_id] = key
    return keys


def describe(keys: Mapping[str, VerifyingKey]) -> str:
    return ", ".join(sorted(keys)) or "none"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Plasma packet signing keys (ed25519)")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="create a private key file unless it exists; print its public half")
    generate.add_argument("path", type=Path)
    public = commands.add_parser("public", help="print the public half of a key file")
    public.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            key, created = load_or_create(args.path)
            verifying = key.public
            print(f"{'created' if created else 'kept existing'} {args.path}", file=sys.stderr)
        else:
            verifying = public_key_from_bytes(args.path.read_bytes(), str(args.path))
    except (SigningKeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"key_id={verifying.key_id}", file=sys.stderr)
    print(verifying.base64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
