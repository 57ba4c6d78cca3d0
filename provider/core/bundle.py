"""What a signed manifest bundle is, wherever it came from.

A *bundle* is the exact signed bytes (the "message": concatenated YAML
documents, or a legacy tar.gz) plus the signature sets over it. Sources
(annotations, OCI registries, ConfigMaps) produce :class:`SignedBundle`
values; the verifier checks them. Nothing here parses YAML: bytes first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class BundleSource(enum.StrEnum):
    """Where the signed message was found."""

    ANNOTATION = "annotation"
    OCI = "oci"
    CONFIGMAP = "configmap"


class PayloadKind(enum.StrEnum):
    """What the signature of a :class:`SignatureSet` was computed over."""

    # The signature is over the message bytes themselves (annotations, ConfigMap).
    MESSAGE = "message"
    # The signature is over a cosign simple-signing JSON payload whose
    # ``critical.image.docker-manifest-digest`` must equal the bundle's
    # ``manifest_digest`` (OCI bundles). The manifest digest binds the layer
    # digest, which binds the message bytes; the source checks both hashes.
    SIMPLE_SIGNING = "simple-signing"


@dataclass(frozen=True, slots=True)
class SignatureSet:
    """One signature with its optional keyless material.

    ``index`` is 0 for ``signature`` and N for ``signature_N``. ``payload``
    holds the exact signed bytes. ``certificate`` and ``chain`` are PEM;
    ``rekor_bundle`` is the JSON text of cosign's bundle
    (``{"SignedEntryTimestamp", "Payload": {...}}``), already un-gzipped.
    """

    index: int
    signature: bytes
    payload: bytes
    payload_kind: PayloadKind = PayloadKind.MESSAGE
    certificate: bytes | None = None
    chain: bytes | None = None
    rekor_bundle: bytes | None = None


@dataclass(frozen=True, slots=True)
class SignedBundle:
    """A signed message and every signature set found for it."""

    source: BundleSource
    reference: str
    message: bytes
    signature_sets: tuple[SignatureSet, ...]
    # OCI only: the digest (``sha256:<hex>``) of the pulled image manifest.
    manifest_digest: str | None = None


class BundleResolver(Protocol):
    """Fetches the bundle named by a ``resourceBundleRef`` value.

    Raises :class:`provider.errors.ReferenceNotAllowedError` for references the
    configuration forbids, :class:`provider.errors.SourceError` when the fetch
    fails, :class:`provider.errors.FormatError` for malformed remote content.
    """

    def resolve(self, reference: str) -> SignedBundle: ...
