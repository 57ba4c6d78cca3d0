"""The verdict: the one value the CLI prints and the provider answers.

A verdict is the outcome of a completed check. "Could not check" is never a
verdict; it is a :class:`provider.errors.SourceError`. The JSON form is
versioned by ``schema`` and documented in ``docs/verdict.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class Reason(enum.StrEnum):
    """The closed set of verdict reasons. Only ``VERIFIED`` admits."""

    VERIFIED = "VERIFIED"
    # No signature annotation and no bundle reference on the object.
    NO_SIGNATURE = "NO_SIGNATURE"
    # Signature material exists but cannot be decoded (base64, gzip, DER, tar, YAML, PEM).
    MALFORMED_SIGNATURE = "MALFORMED_SIGNATURE"
    # Signature material exceeds a configured size/count/depth limit.
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    # No signature set verifies with any trusted key (tampered, or signed by an unknown key).
    BAD_SIGNATURE = "BAD_SIGNATURE"
    # A signature verifies cryptographically but no signer is trusted (keyless identity mismatch).
    UNTRUSTED_SIGNER = "UNTRUSTED_SIGNER"
    # The bundle reference names a registry or location the configuration forbids.
    REFERENCE_NOT_ALLOWED = "REFERENCE_NOT_ALLOWED"
    # The signed bundle holds no manifest for this group/kind/namespace/name.
    NOT_IN_BUNDLE = "NOT_IN_BUNDLE"
    # The object differs from the signed manifest in fields that are neither ignored nor defaulted.
    MANIFEST_MISMATCH = "MANIFEST_MISMATCH"


class SignerKind(enum.StrEnum):
    KEY = "key"
    KEYLESS = "keyless"


class DiffOp(enum.StrEnum):
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Signer:
    """A signature set that verified.

    For ``KEY`` signers ``name`` is the configured key name and ``fingerprint``
    the hex SHA-256 of the key's DER SubjectPublicKeyInfo. For ``KEYLESS``
    signers ``name`` is the certificate identity (SAN), with ``issuer`` the OIDC
    issuer and ``extensions`` selected Fulcio extensions.
    """

    kind: SignerKind
    name: str
    index: int = 0
    fingerprint: str | None = None
    issuer: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "name": self.name, "index": self.index}
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint
        if self.issuer is not None:
            out["issuer"] = self.issuer
        if self.extensions:
            out["extensions"] = dict(sorted(self.extensions.items()))
        return out


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """Where the signed message came from and which bytes were signed."""

    source: str
    reference: str
    digest: str  # "sha256:<hex>" of the signed message bytes
    resolved: str | None = None  # OCI: "<repo>@sha256:<manifest digest>"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "reference": self.reference, "digest": self.digest}
        if self.resolved is not None:
            out["resolved"] = self.resolved
        return out


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One difference between the signed manifest and the object.

    ``signed``/``actual`` are JSON values, truncated to a configured size
    (strings end in "..." when cut); ``None`` stands for absent.
    """

    path: str
    op: DiffOp
    signed: Any = None
    actual: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op.value, "signed": self.signed, "actual": self.actual}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Identity of the object under review."""

    api_version: str
    kind: str
    name: str
    namespace: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of checking one object. ``verified`` is true only for ``VERIFIED``."""

    reason: Reason
    message: str
    object: ObjectRef | None = None
    signers: tuple[Signer, ...] = ()
    bundle: BundleInfo | None = None
    diff: tuple[DiffEntry, ...] = ()
    # True when the signed manifest named the namespace; False when it had none
    # (it would match in any namespace); None when no manifest was matched.
    namespace_bound: bool | None = None
    # The ignore-field patterns in effect for this object.
    ignored_fields: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return self.reason is Reason.VERIFIED

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "verified": self.verified,
            "reason": self.reason.value,
            "message": self.message,
            "object": self.object.to_json() if self.object else None,
            "signers": [s.to_json() for s in self.signers],
            "bundle": self.bundle.to_json() if self.bundle else None,
            "diff": [d.to_json() for d in self.diff],
            "namespaceBound": self.namespace_bound,
            "ignoredFields": list(self.ignored_fields),
        }
