"""The verification routine: object in, verdict out.

Data flows one way: object -> bundle (annotations, or a referenced bundle
from a resolver) -> signature sets -> signed bytes -> parsed manifests ->
match -> verdict. Signatures are checked over the exact bytes received; YAML
is parsed only after a trusted signature covered those bytes.

A :class:`Verifier` is immutable apart from two bounded caches that hold
deterministic results (parsed messages by digest, signature outcomes by the
bytes they cover), so one instance serves many threads. A new trust policy
means a new Verifier, which starts with empty caches.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from cachetools import LRUCache

from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations, bundle_refs
from provider.core.bundle import BundleResolver, PayloadKind, SignatureSet, SignedBundle
from provider.core.ignore import IgnoreRule, default_ignore_rules
from provider.core.keyless import KeylessIdentity, verify_keyless
from provider.core.keys import PublicKey
from provider.core.limits import DEFAULT_LIMITS, Limits
from provider.core.matcher import MatchResult, match_object, object_ref
from provider.core.message import manifests_from_message
from provider.core.trustroot import TrustedRoot
from provider.core.verdict import BundleInfo, ObjectRef, Reason, Signer, SignerKind, Verdict
from provider.errors import (
    FormatError,
    InputError,
    LimitExceededError,
    ReferenceNotAllowedError,
    SignatureError,
    SourceError,
    UntrustedSignerError,
)

# The type cosign writes into a simple-signing payload for image signatures.
SIMPLE_SIGNING_TYPE = "cosign container image signature"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Who may sign: named public keys, and keyless identities under a trusted root."""

    keys: tuple[PublicKey, ...] = ()
    identities: tuple[KeylessIdentity, ...] = ()
    trusted_root: TrustedRoot | None = None

    @property
    def is_empty(self) -> bool:
        return not self.keys and not (self.identities and self.trusted_root)


@dataclass(frozen=True, slots=True)
class _SetFailure:
    """Why one signature set did not yield a trusted signer."""

    reason: Reason
    detail: str


class _LockedCache:
    """A bounded LRU cache shared by threads; values are computed outside the lock."""

    def __init__(self, maxsize: int) -> None:
        self._cache: LRUCache[Any, Any] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._cache)

    def get_or_compute(self, key: Any, compute: Callable[[], _T]) -> _T:
        with self._lock:
            hit = self._cache.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._cache[key] = value
        return value


_MISSING = object()


class Verifier:
    """Checks objects against their signed manifests under one trust policy."""

    def __init__(
        self,
        trust: TrustPolicy,
        *,
        rules: Sequence[IgnoreRule] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        domain: str = DEFAULT_DOMAIN,
        resolver: BundleResolver | None = None,
        cache_entries: int = 512,
    ) -> None:
        self.trust = trust
        # The built-in rules name the signature annotations of the domain in use.
        self.rules = tuple(rules) if rules is not None else default_ignore_rules(domain)
        self.limits = limits
        self.domain = domain
        self.resolver = resolver
        self._manifests = _LockedCache(cache_entries)
        self._signatures = _LockedCache(cache_entries * 4)

    # -- public API -------------------------------------------------------

    def verify(
        self,
        obj: Mapping[str, Any],
        *,
        extra_rules: Sequence[IgnoreRule] = (),
        namespace: str | None = None,
    ) -> Verdict:
        """Check ``obj``; raise :class:`SourceError` only if it could not be checked.

        ``namespace`` is the admission request's namespace, used when the
        object itself does not carry one. ``extra_rules`` add ignore rules
        for this call only (from a constraint's parameters).
        """
        ref, annotations = self._read_object(obj, namespace)

        # (1) Find the bundle(s): a reference wins over embedded annotations,
        #     as in k8s-manifest-sigstore.
        rules = self.rules + tuple(extra_rules)
        try:
            references = bundle_refs(annotations, domain=self.domain, limits=self.limits)
            embedded = None if references else self._embedded(annotations)
        except FormatError as exc:
            return self._format_verdict(ref, exc, "signature material")
        if embedded is not None:
            return self._verify_bundle(obj, ref, embedded, rules, namespace)
        if not references:
            return Verdict(
                Reason.NO_SIGNATURE,
                f"{ref} has no {self.domain}/message or /resourceBundleRef annotation: "
                "sign it and apply the signed manifest",
                object=ref,
            )

        # Several references: the object verifies if any bundle verifies it.
        # A transient failure of one only matters when no other one verifies.
        verdicts: list[Verdict] = []
        unavailable: SourceError | None = None
        for reference in references:
            try:
                bundle = self._resolve(reference)
            except ReferenceNotAllowedError as exc:
                verdicts.append(Verdict(Reason.REFERENCE_NOT_ALLOWED, exc.diagnostics(), object=ref))
                continue
            except FormatError as exc:
                verdicts.append(self._format_verdict(ref, exc, f"bundle {reference[:200]}"))
                continue
            except SourceError as exc:
                unavailable = unavailable or exc
                continue
            verdict = self._verify_bundle(obj, ref, bundle, rules, namespace)
            if verdict.verified:
                return verdict
            verdicts.append(verdict)
        if unavailable is not None:
            raise unavailable
        return min(verdicts, key=_rank)

    def cache_info(self) -> dict[str, int]:
        """How many signature outcomes and parsed messages are cached."""
        return {"signatures": self._signatures.size, "messages": self._manifests.size}

    # -- steps ------------------------------------------------------------

    def _read_object(self, obj: Mapping[str, Any], namespace: str | None) -> tuple[ObjectRef, dict[str, str]]:
        if not isinstance(obj, Mapping):
            raise InputError(f"object must be a mapping, got {type(obj).__name__}")
        for field in ("apiVersion", "kind"):
            if not isinstance(obj.get(field), str) or not obj.get(field):
                raise InputError(f"object has no {field}")
        metadata = obj.get("metadata")
        if not isinstance(metadata, Mapping):
            raise InputError("object has no metadata mapping")
        if namespace is not None and not isinstance(namespace, str):
            raise InputError("namespace must be a string")
        # Size and node counts of the object are bounded where it is read (the
        # wire envelope, the CLI's YAML loader); nesting depth is bounded by the
        # matcher, so the object is not walked an extra time here.
        ref = object_ref(obj, namespace=namespace)
        raw = metadata.get("annotations") or {}
        if not isinstance(raw, Mapping):
            raise InputError("metadata.annotations must be a mapping")
        prefix = self.domain + "/"
        annotations: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, str):
                annotations[key] = value
            elif key.startswith(prefix):
                # A signature annotation that is not a string cannot be read;
                # keep it visible so the format layer reports it as malformed.
                annotations[key] = json.dumps(value)[:64]
        return ref, annotations

    def _embedded(self, annotations: Mapping[str, str]) -> SignedBundle | None:
        return bundle_from_annotations(annotations, domain=self.domain, limits=self.limits)

    @staticmethod
    def _format_verdict(ref: ObjectRef, exc: FormatError, what: str) -> Verdict:
        reason = Reason.LIMIT_EXCEEDED if isinstance(exc, LimitExceededError) else Reason.MALFORMED_SIGNATURE
        return Verdict(reason, f"{what}: {exc.diagnostics()}", object=ref)

    def _resolve(self, reference: str) -> SignedBundle:
        if self.resolver is None:
            raise ReferenceNotAllowedError(
                f"bundle reference {reference!r}: referenced bundles are not enabled in this configuration"
            )
        return self.resolver.resolve(reference)

    def _verify_bundle(
        self,
        obj: Mapping[str, Any],
        ref: ObjectRef,
        bundle: SignedBundle,
        rules: tuple[IgnoreRule, ...],
        namespace: str | None,
    ) -> Verdict:
        digest = "sha256:" + hashlib.sha256(bundle.message).hexdigest()
        resolved = None
        if bundle.manifest_digest:
            resolved = f"{_repository(bundle.reference)}@{bundle.manifest_digest}"
        info = BundleInfo(bundle.source.value, bundle.reference, digest, resolved)

        # (2) Check every signature set over the exact bytes it covers.
        if not bundle.signature_sets:
            return Verdict(
                Reason.NO_SIGNATURE, f"bundle {_where(bundle)} carries no signature", ref, bundle=info
            )
        signers: list[Signer] = []
        failures: list[tuple[int, _SetFailure]] = []
        for sset in bundle.signature_sets:
            outcome = self._signatures.get_or_compute(
                _signature_cache_key(sset, bundle), partial(self._check_set, sset, bundle)
            )
            if isinstance(outcome, Signer):
                signers.append(outcome)
            else:
                failures.append((sset.index, outcome))
        if not signers:
            return self._signature_verdict(ref, info, failures)
        signer_tuple = tuple(signers)

        # (3) Only now parse the signed bytes.
        try:
            manifests = self._manifests.get_or_compute(
                digest, lambda: tuple(manifests_from_message(bundle.message, limits=self.limits))
            )
        except LimitExceededError as exc:
            return Verdict(
                Reason.LIMIT_EXCEEDED, f"signed message: {exc.diagnostics()}", ref, signer_tuple, info
            )
        except FormatError as exc:
            return Verdict(
                Reason.MALFORMED_SIGNATURE, f"signed message: {exc.diagnostics()}", ref, signer_tuple, info
            )

        # (4) Match the object to what was signed.
        try:
            result: MatchResult = match_object(
                obj, manifests, rules=rules, namespace=namespace, limits=self.limits
            )
        except LimitExceededError as exc:
            raise InputError(f"object: {exc.diagnostics()}") from exc
        by = _signed_by(signer_tuple)
        if result.manifest is None:
            return Verdict(
                Reason.NOT_IN_BUNDLE,
                f"{ref} is not among the {len(manifests)} manifest(s) {by}; sign a bundle that contains it",
                ref,
                signer_tuple,
                info,
                ignored_fields=result.ignored_fields,
            )
        if result.diff:
            paths = ", ".join(d.path for d in result.diff[:3])
            more = len(result.diff) - 3 + result.omitted
            tail = f" and {more} more" if more > 0 else ""
            return Verdict(
                Reason.MANIFEST_MISMATCH,
                f"{ref} differs from the manifest {by} at {paths}{tail}",
                ref,
                signer_tuple,
                info,
                result.diff,
                result.namespace_bound,
                result.ignored_fields,
            )
        unbound = "" if result.namespace_bound else " (the signed manifest names no namespace)"
        return Verdict(
            Reason.VERIFIED,
            f"{ref} matches the manifest {by}{unbound}",
            ref,
            signer_tuple,
            info,
            (),
            result.namespace_bound,
            result.ignored_fields,
        )

    def _check_set(self, sset: SignatureSet, bundle: SignedBundle) -> Signer | _SetFailure:
        """One signature set -> a trusted signer, or why not. Deterministic, so cached."""
        try:
            signer = self._signer_of(sset)
            if sset.payload_kind is PayloadKind.SIMPLE_SIGNING:
                _check_simple_signing(sset.payload, bundle.manifest_digest)
        except UntrustedSignerError as exc:
            return _SetFailure(Reason.UNTRUSTED_SIGNER, exc.diagnostics())
        except SignatureError as exc:
            return _SetFailure(Reason.BAD_SIGNATURE, exc.diagnostics())
        except LimitExceededError as exc:
            return _SetFailure(Reason.LIMIT_EXCEEDED, exc.diagnostics())
        except FormatError as exc:
            return _SetFailure(Reason.MALFORMED_SIGNATURE, exc.diagnostics())
        return signer

    def _signer_of(self, sset: SignatureSet) -> Signer:
        if not sset.signature:
            raise FormatError("signature is empty")
        for key in self.trust.keys:
            if key.verify(sset.signature, sset.payload):
                return Signer(SignerKind.KEY, key.name, sset.index, fingerprint=key.fingerprint)
        if sset.certificate is not None:
            if self.trust.trusted_root is None:
                raise UntrustedSignerError(
                    "keyless signature, but no trusted root is configured (keyless.trustedRoot)"
                )
            return verify_keyless(sset, root=self.trust.trusted_root, identities=self.trust.identities)
        if not self.trust.keys:
            raise UntrustedSignerError("no trusted public keys are configured")
        names = ", ".join(k.name for k in self.trust.keys[:5])
        raise SignatureError(f"signature does not verify with any trusted key ({names})")

    def _signature_verdict(
        self, ref: ObjectRef, info: BundleInfo, failures: list[tuple[int, _SetFailure]]
    ) -> Verdict:
        # The most telling failure names the verdict: a signature that verified
        # but whose signer is not trusted says more than one that did not verify.
        order = (
            Reason.UNTRUSTED_SIGNER,
            Reason.BAD_SIGNATURE,
            Reason.LIMIT_EXCEEDED,
            Reason.MALFORMED_SIGNATURE,
        )
        reason = min((f.reason for _, f in failures), key=order.index)
        details = "; ".join(f"signature {_set_name(i)}: {f.detail}" for i, f in failures[:4])
        return Verdict(reason, f"{ref}: no trusted signature ({details})", ref, bundle=info)


# -- helpers ------------------------------------------------------------------

# Lower rank = more useful verdict when an object names several bundles.
_RANK = {
    Reason.VERIFIED: 0,
    Reason.MANIFEST_MISMATCH: 1,
    Reason.NOT_IN_BUNDLE: 2,
    Reason.UNTRUSTED_SIGNER: 3,
    Reason.BAD_SIGNATURE: 4,
    Reason.LIMIT_EXCEEDED: 5,
    Reason.MALFORMED_SIGNATURE: 6,
    Reason.REFERENCE_NOT_ALLOWED: 7,
    Reason.NO_SIGNATURE: 8,
}


def _rank(verdict: Verdict) -> int:
    return _RANK[verdict.reason]


def _signature_cache_key(sset: SignatureSet, bundle: SignedBundle) -> tuple[object, ...]:
    return (
        hashlib.sha256(sset.payload).digest(),
        sset.payload_kind,
        bundle.manifest_digest if sset.payload_kind is PayloadKind.SIMPLE_SIGNING else None,
        sset.index,
        sset.signature,
        sset.certificate,
        sset.chain,
        sset.rekor_bundle,
    )


def _check_simple_signing(payload: bytes, manifest_digest: str | None) -> None:
    """A verified simple-signing payload must name the pulled manifest (no replay)."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        kind = critical["type"]
        named = critical["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError("simple-signing payload lacks critical.image.docker-manifest-digest") from exc
    if kind != SIMPLE_SIGNING_TYPE:
        raise SignatureError(
            f"simple-signing payload has type {str(kind)[:80]!r}, expected {SIMPLE_SIGNING_TYPE!r}"
        )
    if not manifest_digest or named != manifest_digest:
        raise SignatureError(
            f"signature is for image {str(named)[:80]}, but the bundle pulled is {manifest_digest}: "
            "a signature of another image"
        )


def _repository(reference: str) -> str:
    """``host[:port]/repo[:tag][@digest]`` -> ``host[:port]/repo``."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _set_name(index: int) -> str:
    return "signature" if index == 0 else f"signature_{index}"


def _where(bundle: SignedBundle) -> str:
    return bundle.reference or f"in {bundle.source.value}s"


def _signed_by(signers: tuple[Signer, ...]) -> str:
    names = ", ".join(f"{s.kind.value} {s.name!r}" for s in signers[:3])
    return f"signed by {names}"
