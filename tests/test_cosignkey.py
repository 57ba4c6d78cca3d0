"""Private keys: the fixtures' cosign keys, keys this tool generates, PKCS#8, hostile key files."""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provider.core.cosignkey import COSIGN_PEM_TYPE, PrivateKey, load_private_key
from provider.core.keys import load_public_key
from provider.errors import KeyMaterialError
from tests.conftest import KMS
from tests.keyutil import cosign_keypair

DATA = b"message bytes"


@pytest.mark.parametrize(
    ("folder", "other"),
    [
        ("pkg/k8smanifest/testdata", "pkg/cosign/testdata"),
        ("pkg/cosign/testdata", "pkg/k8smanifest/testdata"),
    ],
)
def test_fixture_testkey_signs_for_matching_testpub(folder: str, other: str) -> None:
    key = load_private_key((KMS / folder / "testkey").read_bytes(), password=b"")
    signature = key.sign(DATA)
    assert load_public_key((KMS / folder / "testpub").read_bytes(), name="match").verify(signature, DATA)
    assert not load_public_key((KMS / other / "testpub").read_bytes(), name="other").verify(signature, DATA)
    assert signature[0] == 0x30  # DER SEQUENCE, as cosign writes


def test_fixture_testkey_wrong_password() -> None:
    with pytest.raises(KeyMaterialError, match="decryption failed"):
        load_private_key((KMS / "pkg/cosign/testdata/testkey").read_bytes(), password=b"wrong")


def test_generated_keypair_has_cosign_layout() -> None:
    private_pem, public_pem = cosign_keypair(b"s3cret")
    text = private_pem.decode()
    assert text.startswith(f"-----BEGIN {COSIGN_PEM_TYPE}-----\n")
    assert text.endswith(f"-----END {COSIGN_PEM_TYPE}-----\n")
    body = "".join(text.strip().splitlines()[1:-1])
    assert all(len(line) <= 64 for line in text.splitlines())
    document = json.loads(base64.b64decode(body))
    assert list(document) == ["kdf", "cipher", "ciphertext"]
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    key = load_private_key(private_pem, password=b"s3cret")
    assert load_public_key(public_pem, name="gen").verify(key.sign(DATA), DATA)
    assert key.public_pem() == public_pem
    with pytest.raises(KeyMaterialError):
        load_private_key(private_pem, password=b"")


def test_sigstore_pem_type_and_base64_of_pem_accepted() -> None:
    private_pem, public_pem = cosign_keypair(b"")
    renamed = private_pem.replace(b"ENCRYPTED COSIGN PRIVATE KEY", b"ENCRYPTED SIGSTORE PRIVATE KEY")
    for data in (renamed, base64.b64encode(renamed), base64.b64encode(private_pem)):
        key = load_private_key(data, password=b"")
        assert key.public_pem() == public_pem


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
)
def test_pkcs8_plain_and_encrypted(factory: object) -> None:
    private = factory()  # type: ignore[operator]
    plain = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    locked = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert b"ENCRYPTED PRIVATE KEY" in locked
    public = load_public_key(PrivateKey(private).public_pem(), name="p")
    for data, password in ((plain, b""), (locked, b"pw"), (base64.b64encode(locked), b"pw")):
        assert public.verify(load_private_key(data, password=password).sign(DATA), DATA)
    with pytest.raises(KeyMaterialError, match="wrong password"):
        load_private_key(locked, password=b"nope")


def test_traditional_ec_private_key_accepted() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert b"EC PRIVATE KEY" in pem
    assert load_private_key(pem, password=b"").public_pem() == PrivateKey(private).public_pem()


def _cosign_pem(document: object) -> bytes:
    body = base64.b64encode(json.dumps(document).encode()).decode()
    return f"-----BEGIN {COSIGN_PEM_TYPE}-----\n{body}\n-----END {COSIGN_PEM_TYPE}-----\n".encode()


def _document(private_pem: bytes) -> dict[str, object]:
    body = "".join(private_pem.decode().strip().splitlines()[1:-1])
    return json.loads(base64.b64decode(body))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["kdf"].update(name="argon2"), "kdf"),
        (lambda d: d["cipher"].update(name="aes-gcm"), "cipher"),
        (lambda d: d["kdf"]["params"].update(N=1 << 30), "scrypt parameters"),
        (lambda d: d["kdf"]["params"].update(N=1000), "scrypt parameters"),
        (lambda d: d["kdf"]["params"].update(r=1000), "scrypt parameters"),
        (lambda d: d["kdf"]["params"].update(N="32768"), "not an integer"),
        (lambda d: d["cipher"].update(nonce=base64.b64encode(b"short").decode()), "nonce"),
        (lambda d: d.pop("ciphertext"), "ciphertext"),
        (lambda d: d.update(kdf=[]), "kdf"),
        (lambda d: d.update(ciphertext="!!notbase64"), "JSON document"),
    ],
)
def test_hostile_cosign_documents(mutate: object, message: str) -> None:
    document = _document(cosign_keypair(b"")[0])
    mutate(document)  # type: ignore[operator]
    with pytest.raises(KeyMaterialError, match=message):
        load_private_key(_cosign_pem(document), password=b"")


def test_tampered_ciphertext_fails_authentication() -> None:
    document = _document(cosign_keypair(b"")[0])
    sealed = bytearray(base64.b64decode(str(document["ciphertext"])))
    sealed[-1] ^= 1
    document["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(KeyMaterialError, match="decryption failed"):
        load_private_key(_cosign_pem(document), password=b"")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\nnot json\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"
        + base64.b64encode(b"[1]")
        + b"\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nunterminated",
    ],
)
def test_bad_private_key_files(data: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        load_private_key(data, password=b"")


def test_error_messages_carry_no_key_material() -> None:
    private_pem = cosign_keypair(b"")[0]
    with pytest.raises(KeyMaterialError) as info:
        load_private_key(private_pem, password=b"wrong")
    body_line = private_pem.decode().splitlines()[1]
    assert not re.search(re.escape(body_line[:16]), str(info.value))
