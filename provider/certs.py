"""Development certificates: a private CA, a server and a client certificate.

Gatekeeper calls an external data provider over mutual TLS: the provider
presents a server certificate that chains to the ``caBundle`` of the
``Provider`` resource, and Gatekeeper presents its own client certificate,
signed by Gatekeeper's CA with the DNS name of its webhook service. This
module makes the same shape of material for development, tests and the
``certs`` command: ECDSA P-256 keys (cheap handshakes), short validity, SANs
only (no reliance on the common name).

Private keys are written with mode 0600 and every file is replaced
atomically, so a server that reloads its certificate never reads a half
written file.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provider.errors import KeyMaterialError

log = logging.getLogger(__name__)

# The DNS name in the client certificate Gatekeeper presents to providers.
GATEKEEPER_CLIENT_DNS_NAME = "gatekeeper-webhook-service.gatekeeper-system.svc"

DEFAULT_CA_VALID_DAYS = 365
DEFAULT_LEAF_VALID_DAYS = 90
# A certificate that expires sooner than this is treated as unusable when
# deciding whether existing development certificates can be reused.
_REUSE_MARGIN = datetime.timedelta(days=1)
# Backdate notBefore a little so that small clock differences do not matter.
_CLOCK_SKEW = datetime.timedelta(minutes=5)


class CertUsage(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class KeyedCertificate:
    """A certificate with its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage extension with only the named uses set (the others are never used here)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def generate_ca(
    common_name: str = "manifest-provider development CA", *, valid_days: int = DEFAULT_CA_VALID_DAYS
) -> KeyedCertificate:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyedCertificate(cert, key)


def _general_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise KeyMaterialError(
                f"certificate IP address: expected an IPv4/IPv6 address, found {ip!r}"
            ) from exc
    return names


def issue_certificate(
    ca: KeyedCertificate,
    *,
    usage: CertUsage,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    common_name: str | None = None,
    valid_days: int = DEFAULT_LEAF_VALID_DAYS,
) -> KeyedCertificate:
    """A leaf certificate signed by ``ca`` for TLS server or client use.

    The subject alternative names carry the identity (TLS clients, and the
    provider's client DNS-name pin, ignore the common name).
    """
    if not dns_names and not ip_addresses:
        raise KeyMaterialError("a certificate needs at least one DNS name or IP address, found none")
    key = _new_key()
    cn = common_name or (dns_names[0] if dns_names else ip_addresses[0])
    now = _now()
    eku = ExtendedKeyUsageOID.SERVER_AUTH if usage is CertUsage.SERVER else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + datetime.timedelta(days=valid_days), ca.certificate.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(dns_names, ip_addresses)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return KeyedCertificate(cert, key)


def write_file(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` atomically; private files get mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; public files are widened only after writing.
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not private:
            Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_keyed(cert: KeyedCertificate, cert_path: Path, key_path: Path) -> None:
    """Write the key first so a reader that sees the new certificate finds its key."""
    write_file(key_path, cert.key_pem(), private=True)
    write_file(cert_path, cert.certificate_pem(), private=False)


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(
            f"certificate {path}: expected a readable PEM certificate ({exc.__class__.__name__})"
        ) from exc


def load_keyed(cert_path: Path, key_path: Path) -> KeyedCertificate:
    """A certificate and its EC private key (unencrypted PEM), checked to belong together."""
    cert = load_certificate(cert_path)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyMaterialError(
            f"private key {key_path}: expected an unencrypted PEM key ({exc.__class__.__name__})"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"private key {key_path}: expected an EC key, found {type(key).__name__}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise KeyMaterialError(f"private key {key_path} does not belong to certificate {cert_path}")
    return KeyedCertificate(cert, key)


def is_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (signature only; no path or policy checks)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses as text) of the subject alternative names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


@dataclass(frozen=True, slots=True)
class DevCertPaths:
    """Where the development certificates live (the ``--dev-certs`` directory)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"


def _still_valid(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - _REUSE_MARGIN > now


def _reusable(
    paths: DevCertPaths,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    client_dns_names: Sequence[str],
) -> bool:
    try:
        ca = load_certificate(paths.ca_cert)
        server = load_keyed(paths.server_cert, paths.server_key)
        client = load_keyed(paths.client_cert, paths.client_key)
    except KeyMaterialError as exc:
        log.info("development certificates in %s cannot be reused: %s", paths.directory, exc.diagnostics())
        return False
    now = _now()
    server_dns, server_ips = san_names(server.certificate)
    client_dns, _ = san_names(client.certificate)
    checks = {
        "CA, server and client certificates are within their validity period": all(
            _still_valid(c, now) for c in (ca, server.certificate, client.certificate)
        ),
        "server and client certificates are signed by ca.crt": is_issued_by(server.certificate, ca)
        and is_issued_by(client.certificate, ca),
        "server certificate names every requested DNS name and IP": set(dns_names) <= server_dns
        and {str(ipaddress.ip_address(i)) for i in ip_addresses} <= server_ips,
        "client certificate names every requested DNS name": set(client_dns_names) <= client_dns,
    }
    failed = [what for what, ok in checks.items() if not ok]
    if failed:
        log.info(
            "development certificates in %s are regenerated: expected %s", paths.directory, "; ".join(failed)
        )
        return False
    return True


def ensure_dev_certs(
    directory: Path,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    client_dns_names: Sequence[str] = (GATEKEEPER_CLIENT_DNS_NAME,),
) -> tuple[DevCertPaths, bool]:
    """Development CA, server and client certificates in ``directory``.

    Existing files are reused when they are complete, valid, chain to the CA
    and carry the requested names; otherwise all of them are generated anew
    (the CA's key is not kept on disk, so a partial set cannot be repaired).
    Returns the paths and whether new certificates were written. The one CA
    signs both sides: the server trusts it for client certificates, clients
    trust it for the server certificate.
    """
    paths = DevCertPaths(directory)
    if _reusable(paths, dns_names, ip_addresses, client_dns_names):
        return paths, False
    directory.mkdir(parents=True, exist_ok=True)
    ca = generate_ca()
    server = issue_certificate(ca, usage=CertUsage.SERVER, dns_names=dns_names, ip_addresses=ip_addresses)
    client = issue_certificate(ca, usage=CertUsage.CLIENT, dns_names=client_dns_names)
    write_file(paths.ca_cert, ca.certificate_pem(), private=False)
    write_keyed(server, paths.server_cert, paths.server_key)
    write_keyed(client, paths.client_cert, paths.client_key)
    log.info("wrote development CA, server and client certificates to %s", directory)
    return paths, True
