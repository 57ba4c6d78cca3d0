"""Signing keys: cosign's encrypted private-key format and plain PKCS#8.

cosign stores a private key as PEM type ``ENCRYPTED COSIGN PRIVATE KEY``
(newer releases: ``ENCRYPTED SIGSTORE PRIVATE KEY``) whose body is JSON::

    {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": B64},
     "cipher": {"name": "nacl/secretbox", "nonce": B64},
     "ciphertext": B64}

The secretbox key is scrypt(password, salt, N, r, p) with 32 bytes of output,
and the plaintext is the PKCS#8 DER private key. The password comes from
``COSIGN_PASSWORD`` in the command line; it may be empty.

Also accepted: ``ENCRYPTED PRIVATE KEY`` (PKCS#8 with a password) and
unencrypted ``PRIVATE KEY`` / ``EC PRIVATE KEY`` / ``RSA PRIVATE KEY``, each as
PEM or as base64 of PEM. :func:`generate_keypair` writes the
``ENCRYPTED COSIGN PRIVATE KEY`` form, which every cosign release reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from provider.core.keys import PublicKey, from_key_object, pem_text
from provider.errors import KeyMaterialError

log = logging.getLogger(__name__)

COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
_JSON_PEM_TYPES = (COSIGN_PEM_TYPE, SIGSTORE_PEM_TYPE)

# cosign's parameters; also the upper bounds accepted when reading, so that a
# hostile key file cannot demand gigabytes of scrypt memory.
SCRYPT_N = 32768
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_SCRYPT_N = 1 << 16
_MAX_SCRYPT_R = 16
_MAX_SCRYPT_P = 4
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_SALT_BYTES = 32
_KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_EC_SIGN_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A signing key; signatures match what :class:`provider.core.keys.PublicKey` verifies."""

    key: SigningKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """cosign's signature over ``data`` (DER for ECDSA)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(_EC_SIGN_HASHES[self.key.curve.name]()))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data)

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key(self, *, name: str = "signing-key") -> PublicKey:
        return from_key_object(self.key.public_key(), name=name)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh ECDSA P-256 key, the type ``cosign generate-key-pair`` makes."""
        return cls(ec.generate_private_key(ec.SECP256R1()))


def _wrap(key: object) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _EC_SIGN_HASHES:
            raise KeyMaterialError(f"private key: ECDSA curve {key.curve.name} is not supported")
        return PrivateKey(key)
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        from_key_object(key.public_key(), name="private key")  # same size/type checks as verification
        return PrivateKey(key)
    raise KeyMaterialError(
        f"private key: {type(key).__name__} is not a supported key type (ECDSA, RSA, Ed25519)"
    )


def load_private_key(data: bytes, *, password: bytes) -> PrivateKey:
    """Read a cosign-encrypted, PKCS#8-encrypted or plain private key (PEM or base64 of PEM)."""
    pem = pem_text(data, name="private key")
    match = _PEM_BLOCK.search(pem)
    if match is None:
        raise KeyMaterialError("private key: no complete PEM block found")
    pem_type = match.group(1).decode("ascii")
    if pem_type in _JSON_PEM_TYPES:
        try:
            body = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyMaterialError(f"private key: {pem_type} body is not base64") from exc
        der = _decrypt_cosign(body, password=password)
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyMaterialError("private key: decrypted content is not a PKCS#8 private key") from exc
        return _wrap(key)
    if pem_type == "ENCRYPTED PRIVATE KEY":
        secret: bytes | None = password
    elif pem_type in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
        secret = None
    else:
        raise KeyMaterialError(f"private key: PEM type {pem_type!r} is not a private key this tool reads")
    try:
        key = serialization.load_pem_private_key(match.group(0), password=secret)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(
            f"private key: cannot read {pem_type} (wrong password or corrupt key)"
        ) from exc
    return _wrap(key)


def _decrypt_cosign(body: bytes, *, password: bytes) -> bytes:
    try:
        doc = json.loads(body)
        kdf = _obj(doc, "kdf")
        params = _obj(kdf, "params")
        cipher = _obj(doc, "cipher")
        if kdf.get("name") != "scrypt":
            raise KeyMaterialError(
                f"private key: kdf {kdf.get('name')!r} is not supported (expected 'scrypt')"
            )
        if cipher.get("name") != "nacl/secretbox":
            raise KeyMaterialError(
                f"private key: cipher {cipher.get('name')!r} is not supported (expected 'nacl/secretbox')"
            )
        n, r, p = (_int(params, name) for name in ("N", "r", "p"))
        salt = base64.b64decode(_str(kdf, "salt"), validate=True)
        nonce = base64.b64decode(_str(cipher, "nonce"), validate=True)
        ciphertext = base64.b64decode(_str(doc, "ciphertext"), validate=True)
    except KeyMaterialError:
        raise
    except (ValueError, binascii.Error) as exc:
        raise KeyMaterialError("private key: encrypted key body is not the expected JSON document") from exc
    if not (
        1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= _MAX_SCRYPT_R and 0 < p <= _MAX_SCRYPT_P
    ):
        raise KeyMaterialError(
            f"private key: scrypt parameters N={n} r={r} p={p} are outside the accepted range "
            f"(N a power of two <= {_MAX_SCRYPT_N}, r <= {_MAX_SCRYPT_R}, p <= {_MAX_SCRYPT_P})"
        )
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyMaterialError(
            f"private key: nonce is {len(nonce)} bytes, expected {nacl.secret.SecretBox.NONCE_SIZE}"
        )
    box_key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_KEY_BYTES)
    try:
        return bytes(nacl.secret.SecretBox(box_key).decrypt(ciphertext, nonce))
    except nacl.exceptions.CryptoError as exc:
        raise KeyMaterialError("private key: decryption failed (wrong COSIGN_PASSWORD?)") from exc


def encrypt_cosign(key: PrivateKey, *, password: bytes) -> bytes:
    """``key`` in cosign's ``ENCRYPTED COSIGN PRIVATE KEY`` PEM form."""
    der = key.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box_key = hashlib.scrypt(
        password, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=_KEY_BYTES
    )
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    # Field order as cosign writes it.
    document = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    body = base64.b64encode(json.dumps(document, separators=(",", ":")).encode("ascii")).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "\n".join([f"-----BEGIN {COSIGN_PEM_TYPE}-----", *lines, f"-----END {COSIGN_PEM_TYPE}-----"]) + "\n"
    ).encode("ascii")


def generate_keypair(*, password: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair: (cosign-encrypted private PEM, public PEM)."""
    key = PrivateKey.generate()
    return encrypt_cosign(key, password=password), key.public_pem()


def _obj(doc: Any, name: str) -> dict[str, Any]:
    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, dict):
        raise KeyMaterialError(f"private key: field {name!r} missing or not an object")
    return value


def _str(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeyMaterialError(f"private key: field {name!r} missing or not a string")
    return value


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeyMaterialError(f"private key: scrypt parameter {name!r} missing or not an integer")
    return value
