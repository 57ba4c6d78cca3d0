"""Signed manifest bundles held in OCI registries (``resourceBundleRef``).

Pulling (:class:`OciBundleResolver`) walks a numbered checklist:

1. parse the reference strictly; refuse it unless ``registries.allow`` names it;
2. resolve a tag to a manifest digest (cached for ``tagCacheTTLSeconds``) or
   take the pinned ``@sha256:`` digest;
3. fetch the manifest; its bytes must hash to that digest; it must be an
   image manifest (OCI or Docker v2) with exactly one layer; image indexes are
   refused, because picking one of their entries would be a guess;
4. fetch the layer; its bytes must have the descriptor's size and sha256.
   Those bytes are the signed message (plain YAML or a gzip tarball);
5. fetch the cosign signature manifest at tag ``sha256-<hex>.sig`` in the same
   repository; every layer is a simple-signing payload (checked against its
   descriptor) with its signature and keyless material in annotations. No such
   manifest means no signature sets: the verifier reports that.

The verifier then checks each signature over its payload and that the
payload names the manifest digest; the digests above chain the payload to the
message bytes. Content addressed by digest is cached long (an LRU bounded by
entries and bytes); concurrent resolutions of one reference share one pull.

Pushing (:func:`push_signed_bundle`) writes the same shape the tools of the
sigstore ecosystem write: an OCI image whose single layer is the message and a
cosign signature image next to it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from provider.core.bundle import BundleSource, PayloadKind, SignatureSet, SignedBundle
from provider.core.limits import DEFAULT_LIMITS, KiB, Limits
from provider.errors import FormatError, LimitExceededError, ReferenceNotAllowedError, SourceError
from provider.sources.ocihttp import (
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    NotFoundError,
    RegistryClient,
    sha256_digest,
)
from provider.sources.ociref import Reference, parse_reference
from provider.sources.ocisettings import (
    AllowEntry,
    Credentials,
    RegistrySettings,
    credentials_from_dockerconfigjson,
)

__all__ = [
    "AllowEntry",
    "Credentials",
    "OciBundleResolver",
    "Reference",
    "RegistrySettings",
    "credentials_from_dockerconfigjson",
    "parse_reference",
    "push_signature",
    "push_signed_bundle",
    "signature_tag",
]

log = logging.getLogger(__name__)

MEDIA_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_BUNDLE = "dev.sigstore.cosign/bundle"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
# A simple-signing payload is a few hundred bytes; anything near this is hostile.
MAX_PAYLOAD_BYTES = 64 * KiB
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_IMAGE_MANIFESTS = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
_INDEXES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})


def signature_tag(digest: str) -> str:
    """cosign's tag for the signatures of ``sha256:<hex>``: ``sha256-<hex>.sig``."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}.sig"


# --- caches -------------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A thread-safe LRU bounded by entry count and by the summed ``size`` of its values."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        if self._max_entries <= 0 or size > self._max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self._max_entries or self._bytes > self._max_bytes:
                _, (_, evicted) = self._data.popitem(last=False)
                self._bytes -= evicted

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class _TtlCache(Generic[K, V]):
    """Tag -> digest answers, kept ``ttl`` seconds by an injected clock."""

    def __init__(self, *, ttl_seconds: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lru: _Lru[K, tuple[float, V]] = _Lru(max_entries=max_entries, max_bytes=max_entries)

    def get(self, key: K) -> tuple[bool, V | None]:
        item = self._lru.get(key)
        if item is None or item[0] <= self._clock():
            return False, None
        return True, item[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl > 0:
            self._lru.put(key, (self._clock() + self._ttl, value), 1)


class _SingleFlight:
    """Concurrent calls with one key share the first caller's result (or exception)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[Any]] = {}

    def do(self, key: str, fn: Callable[[], V]) -> V:
        with self._lock:
            fut = self._calls.get(key)
            leader = fut is None
            if fut is None:
                fut = Future()
                self._calls[key] = fut
        if not leader:
            result: V = fut.result()
            return result
        try:
            value = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            with self._lock:
                self._calls.pop(key, None)


# --- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may pick different duplicates; a signed document must mean one thing.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise FormatError(f"{what} repeats the key {str(exc)[:60]!r}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FormatError(f"{what} is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise FormatError(f"{what} must be a JSON object, got {type(doc).__name__}")
    return doc


def _descriptor(value: Any, what: str, *, max_annotation_bytes: int) -> _Descriptor:
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise FormatError(f"{what}.mediaType must be a non-empty string")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise FormatError(f"{what}.digest must be sha256:<64 lower-case hex>, got {str(digest)[:80]!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise FormatError(f"{what}.size must be a non-negative integer, got {size!r}")
    raw_annotations = value.get("annotations") or {}
    if not isinstance(raw_annotations, dict):
        raise FormatError(f"{what}.annotations must be an object")
    annotations: dict[str, str] = {}
    for key, val in raw_annotations.items():
        if not isinstance(val, str):
            raise FormatError(f"{what}.annotations[{str(key)[:60]!r}] must be a string")
        if len(val) > max_annotation_bytes:
            raise LimitExceededError(
                f"{what}.annotations[{key[:60]!r}] has {len(val)} characters; the limit is {max_annotation_bytes}"
            )
        annotations[key] = val
    return _Descriptor(media_type, digest, size, annotations)


def _image_layers(
    data: bytes, content_type: str, what: str, limits: Limits, *, max_layers: int
) -> list[_Descriptor]:
    doc = _json_object(data, what)
    media_type = doc.get("mediaType", content_type)
    if not isinstance(media_type, str):
        raise FormatError(f"{what}: mediaType must be a string")
    if media_type in _INDEXES or "manifests" in doc:
        raise FormatError(
            f"{what} is an image index; a bundle reference must name a single image manifest "
            "(pin its digest with @sha256:...)"
        )
    if media_type and media_type not in _IMAGE_MANIFESTS:
        raise FormatError(
            f"{what}: media type {media_type[:100]!r} is not an OCI or Docker v2 image manifest"
        )
    if doc.get("schemaVersion") != 2:
        raise FormatError(f"{what}: schemaVersion must be 2, got {str(doc.get('schemaVersion'))[:20]!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise FormatError(f"{what}: layers must be a list")
    if len(layers) > max_layers:
        raise LimitExceededError(f"{what} has {len(layers)} layers; the limit is {max_layers}")
    return [
        _descriptor(layer, f"{what}.layers[{i}]", max_annotation_bytes=limits.max_annotation_bytes)
        for i, layer in enumerate(layers)
    ]


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not valid base64") from exc


# --- resolver -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Image:
    message: bytes


class OciBundleResolver:
    """A :class:`provider.core.bundle.BundleResolver` for OCI references (see the module docstring)."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
        client: RegistryClient | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._client = client or RegistryClient(settings, clock=clock)
        self._tags: _TtlCache[tuple[str, str, str], str | None] = _TtlCache(
            ttl_seconds=settings.tag_cache_ttl_seconds,
            max_entries=max(16, settings.content_cache_entries * 2),
            clock=clock,
        )
        self._content: _Lru[tuple[str, str, str, str], Any] = _Lru(
            max_entries=settings.content_cache_entries, max_bytes=settings.content_cache_bytes
        )
        self._flight = _SingleFlight()

    def close(self) -> None:
        self._client.transport.close()

    def resolve(self, reference: str) -> SignedBundle:
        ref = parse_reference(reference)  # (1)
        if not self.settings.is_allowed(ref):
            raise ReferenceNotAllowedError(
                f"bundle reference {ref.name[:120]} is not in registries.allow"
                + ("" if self.settings.allow else " (no registry is allowed until configured)")
            )
        return self._flight.do(str(ref), lambda: self._resolve(ref))

    def _resolve(self, ref: Reference) -> SignedBundle:
        started = time.monotonic()
        digest = self._digest_of(ref)  # (2)
        image = self._image(ref, digest)  # (3) (4)
        sets = self._signatures(ref, digest)  # (5)
        log.debug(
            "resolved bundle %s to %s: %d message bytes, %d signature set(s) in %.1f ms",
            ref,
            digest,
            len(image.message),
            len(sets),
            (time.monotonic() - started) * 1000,
        )
        return SignedBundle(
            source=BundleSource.OCI,
            reference=str(ref),
            message=image.message,
            signature_sets=sets,
            manifest_digest=digest,
        )

    # (2)
    def _digest_of(self, ref: Reference) -> str:
        if ref.digest is not None:
            return ref.digest
        tag = ref.tag or "latest"
        key = (ref.registry, ref.repository, tag)
        hit, digest = self._tags.get(key)
        if hit and digest is not None:
            return digest
        data, content_type = self._manifest(ref, tag, image=True)
        digest = sha256_digest(data)
        self._tags.put(key, digest)
        # Keep the manifest we already hold, so the digest lookup does not fetch it again.
        self._content.put(("manifest", ref.registry, ref.repository, digest), (data, content_type), len(data))
        return digest

    def _manifest(self, ref: Reference, object_id: str, *, image: bool) -> tuple[bytes, str]:
        try:
            return self._client.get_manifest(ref.api_registry, ref.repository, object_id)
        except NotFoundError as exc:
            if image:
                # A 404 may be a push in progress or a tag moved a moment ago: transient.
                raise SourceError(
                    f"bundle image {ref.name}:{object_id} not found in the registry (404); "
                    "it may not be pushed yet"
                ) from exc
            raise

    # (3) (4)
    def _image(self, ref: Reference, digest: str) -> _Image:
        key = ("image", ref.registry, ref.repository, digest)
        cached = self._content.get(key)
        if isinstance(cached, _Image):
            return cached
        held = self._content.get(("manifest", ref.registry, ref.repository, digest))
        if held is not None:
            data, content_type = held
        else:
            data, content_type = self._manifest(ref, digest, image=True)
        found = sha256_digest(data)
        if found != digest:
            raise FormatError(
                f"manifest of {ref.name} hashes to {found}, expected {digest}"
                + (" (the pinned digest)" if ref.digest else "")
            )
        what = f"manifest of {ref.name}@{digest}"
        layers = _image_layers(data, content_type, what, self.limits, max_layers=64)
        if len(layers) != 1:
            raise FormatError(f"{what} has {len(layers)} layers; a bundle image has exactly one")
        layer = layers[0]
        limit = min(self.settings.max_layer_bytes, self.limits.max_message_bytes)
        message = self._client.get_blob(
            ref.api_registry, ref.repository, layer.digest, size=layer.size, max_bytes=limit
        )
        image = _Image(message)
        self._content.put(key, image, len(message) + len(data))
        log.info("pulled bundle image %s@%s (%d message bytes)", ref.name, digest, len(message))
        return image

    # (5)
    def _signatures(self, ref: Reference, digest: str) -> tuple[SignatureSet, ...]:
        tag = signature_tag(digest)
        tkey = (ref.registry, ref.repository, tag)
        hit, sig_digest = self._tags.get(tkey)
        data: bytes | None = None
        content_type = ""
        if not hit:
            try:
                data, content_type = self._manifest(ref, tag, image=False)
            except NotFoundError:
                sig_digest = None
            else:
                sig_digest = sha256_digest(data)
            self._tags.put(tkey, sig_digest)
        if sig_digest is None:
            return ()
        ckey = ("signatures", ref.registry, ref.repository, sig_digest)
        cached = self._content.get(ckey)
        if isinstance(cached, tuple):
            return cached
        if data is None:
            data, content_type = self._manifest(ref, sig_digest, image=False)
            if sha256_digest(data) != sig_digest:
                raise FormatError(f"signature manifest of {ref.name} does not hash to {sig_digest}")
        what = f"signature manifest {ref.name}:{tag}"
        layers = _image_layers(
            data, content_type, what, self.limits, max_layers=self.limits.max_signature_sets
        )
        sets = tuple(self._signature_set(ref, i, layer, what) for i, layer in enumerate(layers))
        size = len(data) + sum(len(s.payload) + len(s.signature) for s in sets)
        self._content.put(ckey, sets, size)
        return sets

    def _signature_set(self, ref: Reference, index: int, layer: _Descriptor, what: str) -> SignatureSet:
        here = f"{what}.layers[{index}]"
        if layer.media_type != MEDIA_SIMPLE_SIGNING:
            raise FormatError(
                f"{here}: media type {layer.media_type[:100]!r}, expected {MEDIA_SIMPLE_SIGNING}"
            )
        sig_text = layer.annotations.get(ANNOTATION_SIGNATURE)
        if not sig_text:
            raise FormatError(f"{here} has no {ANNOTATION_SIGNATURE} annotation")
        signature = _b64(sig_text, f"{here} annotation {ANNOTATION_SIGNATURE}")
        limit = min(MAX_PAYLOAD_BYTES, self.settings.max_manifest_bytes)
        payload = self._client.get_blob(
            ref.api_registry, ref.repository, layer.digest, size=layer.size, max_bytes=limit
        )

        def text(name: str) -> bytes | None:
            value = layer.annotations.get(name)
            return value.encode() if value else None

        return SignatureSet(
            index=index,
            signature=signature,
            payload=payload,
            payload_kind=PayloadKind.SIMPLE_SIGNING,
            certificate=text(ANNOTATION_CERTIFICATE),
            chain=text(ANNOTATION_CHAIN),
            rekor_bundle=text(ANNOTATION_BUNDLE),
        )


# --- pushing ------------------------------------------------------------------------------------


class MessageSigner(Protocol):
    """What pushing needs of a private key (``provider.core.cosignkey.PrivateKey`` fits)."""

    def sign(self, data: bytes) -> bytes: ...


def _compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _config_blob(diff_ids: list[str]) -> bytes:
    # The minimal image configuration go-containerregistry writes for an image built on an empty base.
    return _compact(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    )


def _manifest(config: bytes, layers: list[dict[str, Any]]) -> bytes:
    return _compact(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": layers,
        }
    )


def simple_signing_payload(ref: Reference, digest: str) -> bytes:
    """cosign's simple-signing payload for ``digest`` in ``ref``'s repository (exact bytes signed)."""
    return _compact(
        {
            "critical": {
                "identity": {"docker-reference": ref.name},
                "image": {"docker-manifest-digest": digest},
                "type": SIMPLE_SIGNING_TYPE,
            },
            "optional": None,
        }
    )


def _push_target(reference: str, settings: RegistrySettings) -> Reference:
    ref = parse_reference(reference)
    if ref.digest is not None:
        raise FormatError(f"push reference {reference[:120]!r} must name a tag, not a digest")
    if not settings.is_allowed(ref):
        raise ReferenceNotAllowedError(f"push target {ref.name} is not allowed by the registry settings")
    return ref


def push_signature(
    reference: str,
    digest: str,
    payload: bytes,
    signature: bytes,
    *,
    settings: RegistrySettings,
    certificate: bytes | None = None,
    chain: bytes | None = None,
    rekor_bundle: bytes | None = None,
    client: RegistryClient | None = None,
) -> str:
    """Add one signature to the cosign signature image of ``digest``; returns that image's digest.

    Signatures already there are kept (a second signer adds a layer), as
    cosign does; an identical payload-and-signature layer is not duplicated.
    """
    ref = parse_reference(reference)
    own = client is None
    client = client or RegistryClient(settings)
    try:
        registry = ref.api_registry
        tag = signature_tag(digest)
        annotations = {ANNOTATION_SIGNATURE: base64.b64encode(signature).decode()}
        if certificate:
            annotations[ANNOTATION_CERTIFICATE] = certificate.decode()
        if chain:
            annotations[ANNOTATION_CHAIN] = chain.decode()
        if rekor_bundle:
            annotations[ANNOTATION_BUNDLE] = rekor_bundle.decode()
        payload_digest = client.upload_blob(registry, ref.repository, payload)
        new_layer = {
            "mediaType": MEDIA_SIMPLE_SIGNING,
            "size": len(payload),
            "digest": payload_digest,
            "annotations": annotations,
        }
        layers: list[dict[str, Any]] = []
        try:
            existing, _ = client.get_manifest(registry, ref.repository, tag)
        except NotFoundError:
            existing = None
        if existing is not None:
            doc = _json_object(existing, f"signature manifest {ref.name}:{tag}")
            old = doc.get("layers")
            if isinstance(old, list):
                layers = [layer for layer in old if isinstance(layer, dict) and layer != new_layer]
        layers.append(new_layer)
        config = _config_blob([str(layer.get("digest")) for layer in layers])
        client.upload_blob(registry, ref.repository, config)
        manifest = _manifest(config, layers)
        return client.put_manifest(registry, ref.repository, tag, manifest, MEDIA_OCI_MANIFEST)
    finally:
        if own:
            client.transport.close()


def push_signed_bundle(
    reference: str, message: bytes, key: MessageSigner, *, settings: RegistrySettings
) -> str:
    """Push ``message`` as a one-layer OCI image at ``reference`` and sign it; returns its digest.

    The layer's media type is what content sniffing gives (``application/x-gzip``
    for a gzip tarball, ``text/plain`` for YAML), the config is the minimal
    OCI image configuration, and the signature is a cosign simple-signing
    payload at tag ``sha256-<hex>.sig`` signed with ``key`` over its exact
    bytes, so cosign's own verifier accepts the image.
    """
    ref = _push_target(reference, settings)
    client = RegistryClient(settings)
    try:
        registry = ref.api_registry
        layer_type = "application/x-gzip" if message[:2] == b"\x1f\x8b" else "text/plain"
        layer_digest = client.upload_blob(registry, ref.repository, message)
        config = _config_blob([layer_digest])
        client.upload_blob(registry, ref.repository, config)
        manifest = _manifest(
            config, [{"mediaType": layer_type, "size": len(message), "digest": layer_digest}]
        )
        digest = client.put_manifest(
            registry, ref.repository, ref.tag or "latest", manifest, MEDIA_OCI_MANIFEST
        )
        payload = simple_signing_payload(ref, digest)
        push_signature(str(ref), digest, payload, key.sign(payload), settings=settings, client=client)
        log.info("pushed signed bundle %s@%s", ref.name, digest)
        return digest
    finally:
        client.transport.close()
