"""Everything that reads from a Kubernetes API server.

* Signature bundles held in ConfigMaps, named ``k8s://ConfigMap/NAMESPACE/NAME``
  from an object's ``resourceBundleRef`` annotation. The ConfigMap's ``data``
  carries the same values the annotations would: ``message`` (base64 of the
  gzipped signed bytes), ``signature``, and optionally ``certificate`` and
  ``bundle``, with ``signature_N``/``certificate_N``/``bundle_N`` for further
  signature sets. Annotation keys cannot be ConfigMap keys (``/`` is not
  allowed there), so the keys are the annotation names without the domain.
* Public keys held in Secrets, named ``k8s://NAMESPACE/SECRET`` (cosign's
  convention), read from the entry ``cosign.pub``.
* Registry pull secrets (``kubernetes.io/dockerconfigjson``) for the OCI source.
* Paginated listing of objects (``limit``/``continue``) for ``audit``.

Every call goes through :class:`ClusterClient`, which speaks plain JSON over
the official client's connection and authentication handling, and turns
transport and HTTP failures into :class:`SourceError` with the path, the
status and the server's own reason (never a token or a Secret's content).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3
from cachetools import TTLCache

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations
from provider.core.bundle import BundleSource, SignedBundle
from provider.core.limits import DEFAULT_LIMITS, Limits
from provider.errors import (
    ConfigError,
    FormatError,
    KeyMaterialError,
    ReferenceNotAllowedError,
    SourceError,
)

log = logging.getLogger(__name__)

SCHEME = "k8s://"
CONFIGMAP_PREFIX = "k8s://ConfigMap/"
# The entry of a key Secret that holds the public key, as cosign writes it.
SECRET_PUBLIC_KEY_ENTRY = "cosign.pub"  # noqa: S105 - an entry name, not a secret
DOCKERCONFIGJSON_ENTRY = ".dockerconfigjson"
DOCKERCFG_ENTRY = ".dockercfg"
# ConfigMap data keys that belong to a signature bundle.
_BUNDLE_KEY = re.compile(r"^(message|signature|certificate|bundle|chain)(_[0-9]{1,3})?$")
# RFC 1123 label (namespaces) and subdomain (object names), as the API server checks them.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A hostile or broken API server must not make us buffer without bound.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


# -- client -------------------------------------------------------------------


def api_client(*, kubeconfig: str | None = None, context: str | None = None) -> k8s_client.ApiClient:
    """An API client: in-cluster credentials when running in a pod, else kubeconfig.

    An explicit ``kubeconfig`` path always wins. Raises :class:`ConfigError`
    when neither source is usable, naming both attempts.
    """
    # Imported here: configuration parsing and the CLI need this module's types
    # without paying for the Kubernetes client's import.
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    configuration = k8s_client.Configuration()
    if kubeconfig is None and context is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as in_cluster:
            reason = str(in_cluster)
        else:
            return k8s_client.ApiClient(configuration)
    else:
        reason = "a kubeconfig was asked for"
    # The client reads $KUBECONFIG once at import; read it at call time instead.
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=context, client_configuration=configuration, persist_config=False
        )
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConfigError(
            [f"no Kubernetes credentials: in-cluster config unusable ({reason}); kubeconfig unusable ({exc})"]
        ) from exc
    return k8s_client.ApiClient(configuration)


class ClusterClient:
    """JSON GETs against the API server with errors translated to :class:`SourceError`."""

    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        timeout_seconds: float = 5.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.api = api
        self.timeout_seconds = timeout_seconds
        self.max_response_bytes = max_response_bytes

    def get_json(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` and return the decoded JSON object.

        Raises :class:`ApiStatusError` (a :class:`SourceError`) for HTTP errors
        so callers can tell 404 and 403 apart, :class:`SourceError` otherwise.
        """
        from kubernetes.client.exceptions import ApiException

        params = [(k, v) for k, v in (query or {}).items() if v not in (None, "")]
        try:
            method, url, headers, _body, _post = self.api.param_serialize(
                "GET",
                path,
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                method, url, header_params=headers, _request_timeout=self.timeout_seconds
            )
            data = response.read()  # type: ignore[no-untyped-call]
            status = response.status
        except ApiException as exc:
            raise SourceError(f"GET {path}: {_short(exc.reason)} (status {exc.status})") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(f"GET {path}: cannot reach the API server ({exc.__class__.__name__})") from exc
        if data is not None and len(data) > self.max_response_bytes:
            raise SourceError(f"GET {path}: response of {len(data)} bytes exceeds {self.max_response_bytes}")
        if not 200 <= status < 300:
            raise ApiStatusError(path, status, _status_message(data))
        try:
            doc = json.loads(data or b"")
        except ValueError as exc:
            raise SourceError(
                f"GET {path}: expected JSON, got {len(data or b'')} bytes that are not"
            ) from exc
        if not isinstance(doc, dict):
            raise SourceError(f"GET {path}: expected a JSON object, got {type(doc).__name__}")
        return doc


class ApiStatusError(SourceError):
    """The API server answered with an HTTP error status."""

    def __init__(self, path: str, status: int, message: str) -> None:
        self.path = path
        self.status = status
        super().__init__(f"GET {path}: HTTP {status}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)


def _status_message(data: bytes | None) -> str:
    try:
        doc = json.loads(data or b"")
    except ValueError:
        return "no Status object in the answer"
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return _short(doc["message"])
    return "no Status message in the answer"


def _short(text: Any, limit: int = 200) -> str:
    s = str(text).replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."


# -- settings -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """The ``cluster:`` section of the configuration.

    ``configmap_namespaces`` is the allowlist of namespaces whose ConfigMaps
    may hold signature bundles; empty (the default) disables ConfigMap
    bundles altogether. ``kubeconfig`` is for running outside a cluster.
    """

    configmap_namespaces: tuple[str, ...] = ()
    cache_ttl_seconds: int = 30
    cache_max_entries: int = 256
    request_timeout_seconds: float = 5.0
    kubeconfig: str | None = None

    _FIELDS = {
        "configMapNamespaces": "configmap_namespaces",
        "cacheTtlSeconds": "cache_ttl_seconds",
        "cacheMaxEntries": "cache_max_entries",
        "requestTimeoutSeconds": "request_timeout_seconds",
        "kubeconfig": "kubeconfig",
    }

    @classmethod
    def from_mapping(cls, data: Any, *, where: str = "cluster") -> ClusterSettings:
        """Parse and validate; raise :class:`ConfigError` listing every problem."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError([f"{where}: expected a mapping, found {type(data).__name__}"])
        problems: list[str] = []
        values: dict[str, Any] = {}
        for key in data:
            if key not in cls._FIELDS:
                problems.append(f"{where}.{key}: unknown setting (known: {', '.join(cls._FIELDS)})")
        namespaces = data.get("configMapNamespaces", [])
        if not isinstance(namespaces, list):
            problems.append(f"{where}.configMapNamespaces: expected a list of namespaces")
        else:
            for i, ns in enumerate(namespaces):
                if not isinstance(ns, str) or not _DNS_LABEL.match(ns):
                    problems.append(
                        f"{where}.configMapNamespaces[{i}]: expected a namespace name, found {ns!r}"
                    )
            values["configmap_namespaces"] = tuple(n for n in namespaces if isinstance(n, str))
        for key, attr, kind in (
            ("cacheTtlSeconds", "cache_ttl_seconds", int),
            ("cacheMaxEntries", "cache_max_entries", int),
            ("requestTimeoutSeconds", "request_timeout_seconds", float),
        ):
            if key not in data:
                continue
            value = data[key]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if kind is int:
                ok = ok and isinstance(value, int)
            if not ok or value < 0 or (key != "cacheTtlSeconds" and value == 0):
                problems.append(f"{where}.{key}: expected a positive number, found {value!r}")
            else:
                values[attr] = kind(value)
        if "kubeconfig" in data:
            if data["kubeconfig"] is not None and not isinstance(data["kubeconfig"], str):
                problems.append(f"{where}.kubeconfig: expected a file path")
            else:
                values["kubeconfig"] = data["kubeconfig"]
        if problems:
            raise ConfigError(problems)
        return cls(**values)


# -- ConfigMap bundles ----------------------------------------------------------


def parse_configmap_ref(reference: str) -> tuple[str, str]:
    """``k8s://ConfigMap/NS/NAME`` -> (NS, NAME); anything else is not allowed."""
    if not isinstance(reference, str) or not reference.startswith(CONFIGMAP_PREFIX):
        raise ReferenceNotAllowedError(
            f"bundle reference {_short(reference, 120)!r}: expected k8s://ConfigMap/NAMESPACE/NAME"
        )
    parts = reference[len(CONFIGMAP_PREFIX) :].split("/")
    if len(parts) != 2 or not _DNS_LABEL.match(parts[0]) or not _DNS_SUBDOMAIN.match(parts[1]):
        raise ReferenceNotAllowedError(
            f"bundle reference {_short(reference, 120)!r}: expected k8s://ConfigMap/NAMESPACE/NAME "
            "with a valid namespace and name"
        )
    return parts[0], parts[1]


class ConfigMapBundleResolver:
    """Resolves ``k8s://ConfigMap/NS/NAME`` bundle references (a :class:`BundleResolver`).

    Only namespaces in ``allowed_namespaces`` are read: a reference elsewhere
    is a :class:`ReferenceNotAllowedError` (a verdict), so nobody can point
    the provider at a ConfigMap they control in their own namespace. Bundles
    read successfully are cached for ``cache_ttl_seconds``; failures are not.
    """

    def __init__(
        self,
        cluster: ClusterClient,
        *,
        allowed_namespaces: Collection[str] = (),
        limits: Limits = DEFAULT_LIMITS,
        domain: str = DEFAULT_DOMAIN,
        cache_ttl_seconds: float = 30,
        cache_max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.allowed_namespaces = frozenset(allowed_namespaces)
        self.limits = limits
        self.domain = domain
        self._lock = threading.Lock()
        self._cache: TTLCache[str, SignedBundle] | None = None
        if cache_ttl_seconds > 0:
            self._cache = TTLCache(maxsize=cache_max_entries, ttl=cache_ttl_seconds, timer=clock)
        self.fetches = 0  # API reads made, for logs and tests

    @classmethod
    def from_settings(
        cls, settings: ClusterSettings, *, limits: Limits, domain: str = DEFAULT_DOMAIN
    ) -> ConfigMapBundleResolver:
        api = api_client(kubeconfig=settings.kubeconfig)
        return cls(
            ClusterClient(api, timeout_seconds=settings.request_timeout_seconds),
            allowed_namespaces=settings.configmap_namespaces,
            limits=limits,
            domain=domain,
            cache_ttl_seconds=settings.cache_ttl_seconds,
            cache_max_entries=settings.cache_max_entries,
        )

    def resolve(self, reference: str) -> SignedBundle:
        namespace, name = parse_configmap_ref(reference)
        if namespace not in self.allowed_namespaces:
            allowed = ", ".join(sorted(self.allowed_namespaces)) or "none"
            raise ReferenceNotAllowedError(
                f"bundle reference {reference}: namespace {namespace!r} is not allowed for ConfigMap "
                f"bundles (allowed: {allowed})"
            )
        canonical = f"{CONFIGMAP_PREFIX}{namespace}/{name}"
        if self._cache is not None:
            with self._lock:
                hit = self._cache.get(canonical)
            if hit is not None:
                return hit
        bundle = self._fetch(namespace, name, canonical)
        if self._cache is not None:
            with self._lock:
                self._cache[canonical] = bundle
        return bundle

    def _fetch(self, namespace: str, name: str, reference: str) -> SignedBundle:
        path = f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}"
        with self._lock:
            self.fetches += 1
        try:
            doc = self.cluster.get_json(path)
        except ApiStatusError as exc:
            if exc.not_found:
                # Not cached: the ConfigMap may be applied right after the object.
                raise SourceError(f"bundle {reference}: ConfigMap not found") from exc
            if exc.forbidden:
                raise SourceError(
                    f"bundle {reference}: the provider may not read ConfigMaps in {namespace!r} "
                    f"(HTTP {exc.status}); grant get on configmaps there"
                ) from exc
            raise
        return bundle_from_configmap(doc, reference=reference, limits=self.limits, domain=self.domain)


def bundle_from_configmap(
    doc: Mapping[str, Any], *, reference: str, limits: Limits = DEFAULT_LIMITS, domain: str = DEFAULT_DOMAIN
) -> SignedBundle:
    """A ConfigMap object (JSON) -> the signed bundle its ``data`` holds.

    Raises :class:`FormatError` when the data is not a signature bundle.
    """
    data = doc.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FormatError(f"bundle {reference}: ConfigMap data must be a mapping")
    entries: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not _BUNDLE_KEY.match(key):
            continue
        if not isinstance(value, str):
            raise FormatError(f"bundle {reference}: data.{_short(key, 40)} must be a string")
        # The annotation parser expects the annotation names; lend it the domain.
        entries[f"{domain}/{key}"] = value
    if f"{domain}/message" not in entries or f"{domain}/signature" not in entries:
        found = ", ".join(sorted(k.split("/", 1)[1] for k in entries)) or "none"
        raise FormatError(
            f"bundle {reference}: ConfigMap data needs the keys message and signature (found: {found})"
        )
    bundle = bundle_from_annotations(entries, domain=domain, limits=limits)
    if bundle is None:  # pragma: no cover - both keys are present, so the parser returns a bundle
        raise FormatError(f"bundle {reference}: ConfigMap holds no signature bundle")
    return replace(bundle, source=BundleSource.CONFIGMAP, reference=reference)


# -- Secrets ----------------------------------------------------------------------


def parse_secret_ref(reference: str) -> tuple[str, str]:
    """``k8s://NAMESPACE/SECRET`` -> (NAMESPACE, SECRET)."""
    if not isinstance(reference, str) or not reference.startswith(SCHEME):
        raise ConfigError([f"key reference {_short(reference, 120)!r}: expected k8s://NAMESPACE/SECRET"])
    parts = reference[len(SCHEME) :].split("/")
    if len(parts) != 2 or not _DNS_LABEL.match(parts[0]) or not _DNS_SUBDOMAIN.match(parts[1]):
        raise ConfigError(
            [f"key reference {_short(reference, 120)!r}: expected k8s://NAMESPACE/SECRET with valid names"]
        )
    return parts[0], parts[1]


def _read_secret(cluster: ClusterClient, namespace: str, name: str, what: str) -> Mapping[str, Any]:
    path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
    try:
        doc = cluster.get_json(path)
    except ApiStatusError as exc:
        if exc.not_found:
            raise SourceError(f"{what}: Secret {namespace}/{name} not found") from exc
        if exc.forbidden:
            raise SourceError(
                f"{what}: may not read Secret {namespace}/{name} (HTTP {exc.status}); "
                "grant get on that Secret by name"
            ) from exc
        raise
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        raise KeyMaterialError(f"{what}: Secret {namespace}/{name} data must be a mapping")
    return data


def _secret_entry(data: Mapping[str, Any], entry: str, where: str) -> bytes:
    value = data.get(entry)
    if not isinstance(value, str):
        found = ", ".join(sorted(str(k) for k in data)[:10]) or "none"
        raise KeyMaterialError(f"{where}: no entry {entry!r} (entries: {found})")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyMaterialError(f"{where}: entry {entry!r} is not valid base64") from exc


def load_secret_key(reference: str, *, cluster: ClusterClient | None = None) -> bytes:
    """The public key PEM held in ``cosign.pub`` of the Secret ``k8s://NAMESPACE/SECRET``.

    ``cluster`` defaults to a client built from in-cluster credentials or
    kubeconfig. Raises :class:`ConfigError` for a malformed reference,
    :class:`SourceError` when the Secret cannot be read,
    :class:`KeyMaterialError` when the entry is missing or not base64.
    """
    namespace, name = parse_secret_ref(reference)
    cluster = cluster or ClusterClient(api_client())
    where = f"key {reference}"
    data = _read_secret(cluster, namespace, name, where)
    return _secret_entry(data, SECRET_PUBLIC_KEY_ENTRY, where)


def load_pull_secret_ref(reference: str, *, cluster: ClusterClient | None = None) -> bytes:
    """:func:`load_pull_secret` for a ``k8s://NAMESPACE/SECRET`` reference (``registries.pullSecrets``)."""
    namespace, name = parse_secret_ref(reference)
    return load_pull_secret(namespace, name, cluster=cluster)


def load_pull_secret(namespace: str, name: str, *, cluster: ClusterClient | None = None) -> bytes:
    """The docker config JSON of a pull secret (``.dockerconfigjson``, or legacy ``.dockercfg``).

    Legacy ``.dockercfg`` content (a bare ``{registry: auth}`` map) is wrapped
    in ``{"auths": ...}`` so callers see one format.
    """
    if not _DNS_LABEL.match(namespace or "") or not _DNS_SUBDOMAIN.match(name or ""):
        raise ConfigError([f"pull secret {namespace}/{name}: expected NAMESPACE/NAME with valid names"])
    cluster = cluster or ClusterClient(api_client())
    where = f"pull secret {namespace}/{name}"
    data = _read_secret(cluster, namespace, name, where)
    if DOCKERCONFIGJSON_ENTRY in data:
        raw = _secret_entry(data, DOCKERCONFIGJSON_ENTRY, where)
        wrap = False
    else:
        raw = _secret_entry(data, DOCKERCFG_ENTRY, where)
        wrap = True
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise KeyMaterialError(f"{where}: docker config is not JSON") from exc
    if not isinstance(doc, dict) or (not wrap and not isinstance(doc.get("auths"), dict)):
        raise KeyMaterialError(f"{where}: docker config must be an object with an 'auths' object")
    if wrap:
        return json.dumps({"auths": doc}).encode()
    return raw


# -- discovery and listing -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One listable resource as the API server's discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{base}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


class Discovery:
    """The preferred version of every API group and its listable resources (read once)."""

    def __init__(self, cluster: ClusterClient) -> None:
        self.cluster = cluster
        self._types: list[ResourceType] | None = None
        self._lock = threading.Lock()

    def resource_types(self) -> list[ResourceType]:
        with self._lock:
            if self._types is None:
                self._types = self._discover()
            return list(self._types)

    def _discover(self) -> list[ResourceType]:
        out: list[ResourceType] = []
        core = self.cluster.get_json("/api")
        versions = core.get("versions") or []
        if "v1" in versions:
            out += self._group_version("", "v1")
        groups = self.cluster.get_json("/apis").get("groups") or []
        for group in groups:
            if not isinstance(group, Mapping) or not isinstance(group.get("name"), str):
                continue
            preferred = group.get("preferredVersion") or {}
            version = preferred.get("version") if isinstance(preferred, Mapping) else None
            if not isinstance(version, str):
                listed = group.get("versions") or []
                version = listed[0].get("version") if listed and isinstance(listed[0], Mapping) else None
            if isinstance(version, str):
                try:
                    out += self._group_version(group["name"], version)
                except ApiStatusError as exc:
                    # An aggregated API that is down must not hide every other kind.
                    log.warning("discovery of %s/%s failed: %s", group["name"], version, exc.diagnostics())
        return out

    def _group_version(self, group: str, version: str) -> list[ResourceType]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        doc = self.cluster.get_json(path)
        out: list[ResourceType] = []
        for res in doc.get("resources") or []:
            if not isinstance(res, Mapping):
                continue
            name, kind = res.get("name"), res.get("kind")
            verbs = res.get("verbs") or []
            if not isinstance(name, str) or "/" in name or not isinstance(kind, str) or "list" not in verbs:
                continue
            shorts = tuple(s for s in res.get("shortNames") or [] if isinstance(s, str))
            out.append(ResourceType(group, version, kind, name, bool(res.get("namespaced")), shorts))
        return out

    def find(self, name: str) -> list[ResourceType]:
        """Resource types named ``name``: a kind, plural or short name, optionally ``.group``.

        ``Deployment``, ``deployments``, ``deploy``, ``Deployment.apps`` all
        name apps/v1 Deployments. Several types may share a kind across groups.
        """
        wanted, _, group = name.partition(".")
        wanted = wanted.lower()
        hits = [
            t
            for t in self.resource_types()
            if wanted in (t.kind.lower(), t.plural, *t.short_names)
            and (not group or t.group == group or (group == "core" and not t.group))
        ]
        if hits and not group:
            # Prefer the core group or the first group that has it, as kubectl does.
            first = hits[0].group
            hits = [t for t in hits if t.group == first]
        return hits

    def matching(self, api_groups: Collection[str], kinds: Collection[str]) -> list[ResourceType]:
        """Types matched by a Gatekeeper ``match.kinds`` entry (``*`` matches any)."""
        return [
            t
            for t in self.resource_types()
            if ("*" in api_groups or t.group in api_groups) and ("*" in kinds or t.kind in kinds)
        ]


def list_objects(
    cluster: ClusterClient,
    rtype: ResourceType,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = 250,
) -> Iterator[dict[str, Any]]:
    """Every object of ``rtype``, page by page (``limit``/``continue``).

    Items get ``apiVersion`` and ``kind`` filled in: list answers leave them
    out of the items, and verification needs them.
    """
    path = rtype.collection_path(namespace)
    token: str | None = None
    pages = 0
    while True:
        query = {"limit": str(page_size)}
        if label_selector:
            query["labelSelector"] = label_selector
        if token:
            query["continue"] = token
        doc = cluster.get_json(path, query)
        pages += 1
        items = doc.get("items")
        if not isinstance(items, list):
            raise SourceError(f"GET {path}: expected a list with items")
        for item in items:
            if isinstance(item, dict):
                item.setdefault("apiVersion", rtype.api_version)
                item.setdefault("kind", rtype.kind)
                yield item
        metadata = doc.get("metadata") or {}
        token = metadata.get("continue") if isinstance(metadata, Mapping) else None
        if not token:
            return
        if pages > 100_000:  # a server that never ends its pages
            raise SourceError(f"GET {path}: more than 100000 pages")


def namespace_labels(cluster: ClusterClient) -> dict[str, dict[str, str]]:
    """Labels of every namespace (for Gatekeeper's ``namespaceSelector``)."""
    core = ResourceType("", "v1", "Namespace", "namespaces", False)
    out: dict[str, dict[str, str]] = {}
    for ns in list_objects(cluster, core):
        meta = ns.get("metadata") or {}
        name = meta.get("name")
        labels = meta.get("labels") or {}
        if isinstance(name, str) and isinstance(labels, Mapping):
            out[name] = {str(k): str(v) for k, v in labels.items()}
    return out
