"""Registry access settings: the ``registries:`` section of the configuration.

Registry access is an attack surface (an object's annotation chooses the URL),
so the defaults are closed: no registry is allowed until ``allow`` names it,
private and cluster-internal addresses are refused unless configured, plain
HTTP is used only for hosts listed in ``insecure``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import ssl
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.core.limits import MiB
from provider.errors import ConfigError, FormatError
from provider.sources.ociref import _DOMAIN, _PATH_COMPONENT, Reference, parse_reference

_KNOWN_KEYS = frozenset(
    {
        "allow",
        "insecure",
        "allowPrivateNetworks",
        "caFile",
        "credentials",
        "tagCacheTTLSeconds",
        "contentCacheEntries",
        "contentCacheBytes",
        "connectTimeoutSeconds",
        "readTimeoutSeconds",
        "maxManifestBytes",
        "maxLayerBytes",
    }
)

# Names that only mean something inside a cluster (or on this machine).
_INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".local", ".internal", ".localhost")
_SERVICE_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local")
_INTERNAL_NAMES = frozenset({"localhost", "kubernetes", "kubernetes.default"})


def is_internal_name(host: str) -> bool:
    """True for cluster-internal or machine-local names (``*.svc``, ``*.cluster.local``, ...)."""
    h = host.lower().rstrip(".")
    return h in _INTERNAL_NAMES or h.endswith(_INTERNAL_SUFFIXES) or "." not in h


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Credentials:
    """Registry credentials. ``repr`` never shows the password."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One ``allow`` entry: a registry, optionally narrowed to a repository or a prefix (``team/*``)."""

    registry: str
    repository: str | None = None
    prefix: bool = False

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        registry, slash, path = text.strip().partition("/")
        registry = registry.lower()
        if not _DOMAIN.fullmatch(registry):
            raise ValueError(f"{text!r}: {registry!r} is not a registry host[:port]")
        if not slash:
            return cls(registry)
        prefix = False
        if path == "*" or path.endswith("/*"):
            prefix = True
            path = path[:-2] if path.endswith("/*") else ""
            if not path:
                return cls(registry)
        for comp in path.split("/"):
            if not _PATH_COMPONENT.fullmatch(comp):
                raise ValueError(f"{text!r}: repository component {comp!r} is not valid")
        return cls(registry, path, prefix)

    def matches(self, ref: Reference) -> bool:
        if ref.registry != self.registry:
            return False
        if self.repository is None:
            return True
        if self.prefix:
            return ref.repository.startswith(self.repository + "/")
        return ref.repository == self.repository

    def __str__(self) -> str:
        if self.repository is None:
            return self.registry
        return f"{self.registry}/{self.repository}" + ("/*" if self.prefix else "")


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How bundles are pulled from (and pushed to) OCI registries. Units are in the names."""

    allow: tuple[AllowEntry, ...] = ()
    insecure: frozenset[str] = frozenset()
    allow_private_networks: bool = False
    ca_file: str | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict, repr=False, hash=False)
    tag_cache_ttl_seconds: float = 30.0
    content_cache_entries: int = 256
    content_cache_bytes: int = 64 * MiB
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0
    max_manifest_bytes: int = 1 * MiB
    max_layer_bytes: int = 8 * MiB
    # Command line only (``sign --image --allow-insecure-registry``), never from configuration:
    # these ``host:port`` entries are tried over HTTPS without certificate checks first, then
    # over plain HTTP, as other registry clients do for an "insecure registry".
    unverified_tls: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Frozen means frozen: callers cannot add credentials behind the settings' back.
        object.__setattr__(self, "credentials", types.MappingProxyType(dict(self.credentials)))

    # -- policy ------------------------------------------------------------------------------

    def is_allowed(self, ref: Reference) -> bool:
        return any(entry.matches(ref) for entry in self.allow)

    def is_insecure(self, registry: str) -> bool:
        return registry.lower() in self.insecure

    def private_target_allowed(self, host: str) -> bool:
        """May ``host`` resolve to loopback, private, link-local or cluster addresses?

        Yes when ``allowPrivateNetworks`` is set, or when an ``allow`` or
        ``insecure`` entry names this very host as an IP literal or as a
        cluster service name (``*.svc``, ``*.svc.cluster.local``,
        ``*.cluster.local``): the operator chose that destination in writing.
        Any other name that resolves to a non-public address is refused, even
        when listed: DNS answers are not the operator's choice, and names such
        as ``localhost`` reach the provider's own pod.
        """
        if self.allow_private_networks:
            return True
        h = host.lower()
        if not (is_ip_literal(h) or h.endswith(_SERVICE_SUFFIXES)):
            return False
        listed = {e.registry for e in self.allow} | set(self.insecure)
        return any(entry.rsplit(":", 1)[0] == h for entry in listed)

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials for a registry, by reference name or API host (Docker Hub has two names)."""
        return self.credentials.get(_registry_key(registry))

    def with_credentials(self, extra: Mapping[str, Credentials]) -> RegistrySettings:
        """A copy with ``extra`` credentials added (configured ones win)."""
        merged = {_registry_key(k): v for k, v in extra.items()}
        merged.update(self.credentials)
        return _replace(self, credentials=merged)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def for_push(cls, reference: str, *, insecure: bool) -> RegistrySettings:
        """Settings for the CLI pushing to one named reference.

        The operator typed the destination, so it is allowed whatever its
        address. ``insecure`` allows HTTPS without certificate checks and plain
        HTTP for that registry. Credentials come from ``$DOCKER_CONFIG/config.json`` (or
        ``~/.docker/config.json``) when that file has them in ``auths``.
        """
        ref = parse_reference(reference)
        creds: dict[str, Credentials] = {}
        docker_dir = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
        config_path = Path(docker_dir) / "config.json"
        if config_path.is_file():
            try:
                creds = credentials_from_dockerconfigjson(config_path.read_bytes())
            except (OSError, FormatError):
                creds = {}
        return cls(
            allow=(AllowEntry(ref.registry, ref.repository),),
            insecure=frozenset({ref.registry}) if insecure else frozenset(),
            unverified_tls=frozenset({ref.registry}) if insecure else frozenset(),
            allow_private_networks=True,
            credentials=creds,
        )

    @classmethod
    def from_mapping(
        cls, data: Any, *, where: str = "registries", base_dir: Path | None = None
    ) -> RegistrySettings:
        """Validate a configuration section; every problem is listed at once (ConfigError).

        Relative ``caFile`` and ``passwordFile`` paths are resolved against
        ``base_dir`` (the configuration file's directory) when given.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError([f"{where} must be a mapping, got {type(data).__name__}"])
        problems: list[str] = []
        for key in data:
            if key not in _KNOWN_KEYS:
                problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(_KNOWN_KEYS))})")
        allow: list[AllowEntry] = []
        for i, item in enumerate(_list(data.get("allow"), f"{where}.allow", problems)):
            if not isinstance(item, str):
                problems.append(f"{where}.allow[{i}] must be a string, got {type(item).__name__}")
                continue
            try:
                allow.append(AllowEntry.parse(item))
            except ValueError as exc:
                problems.append(f"{where}.allow[{i}]: {exc}")
        insecure: set[str] = set()
        for i, item in enumerate(_list(data.get("insecure"), f"{where}.insecure", problems)):
            if not isinstance(item, str) or not _DOMAIN.fullmatch(item.strip()):
                problems.append(f"{where}.insecure[{i}] must be a host[:port] string, got {item!r}")
                continue
            insecure.add(item.strip().lower())
        allow_private = data.get("allowPrivateNetworks", False)
        if not isinstance(allow_private, bool):
            problems.append(f"{where}.allowPrivateNetworks must be true or false, got {allow_private!r}")
            allow_private = False
        ca_file = data.get("caFile")
        if ca_file is not None:
            if not isinstance(ca_file, str) or not ca_file:
                problems.append(f"{where}.caFile must be a path string, got {ca_file!r}")
                ca_file = None
            else:
                ca_file = str(_path(ca_file, base_dir))
                problem = _ca_problem(ca_file)
                if problem:
                    problems.append(f"{where}.caFile: {problem}")
        credentials = _credentials(data.get("credentials"), f"{where}.credentials", problems, base_dir)
        defaults = cls()
        numbers: dict[str, Any] = {}
        for key, attr, kind in (
            ("tagCacheTTLSeconds", "tag_cache_ttl_seconds", "seconds0"),
            ("contentCacheEntries", "content_cache_entries", "count0"),
            ("contentCacheBytes", "content_cache_bytes", "count0"),
            ("connectTimeoutSeconds", "connect_timeout_seconds", "seconds"),
            ("readTimeoutSeconds", "read_timeout_seconds", "seconds"),
            ("maxManifestBytes", "max_manifest_bytes", "count"),
            ("maxLayerBytes", "max_layer_bytes", "count"),
        ):
            value = data.get(key, getattr(defaults, attr))
            problem = _number_problem(value, kind)
            if problem:
                problems.append(f"{where}.{key} {problem}, got {value!r}")
            else:
                numbers[attr] = float(value) if kind.startswith("seconds") else int(value)
        if problems:
            raise ConfigError(problems)
        return cls(
            allow=tuple(allow),
            insecure=frozenset(insecure),
            allow_private_networks=allow_private,
            ca_file=ca_file,
            credentials=credentials,
            **numbers,
        )


def _replace(settings: RegistrySettings, **changes: Any) -> RegistrySettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _list(value: Any, where: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where} must be a list, got {type(value).__name__}")
        return []
    return value


def _number_problem(value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if kind.startswith("count") and not isinstance(value, int):
        return "must be an integer"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be finite"
    if kind.endswith("0"):
        return None if value >= 0 else "must be zero or more"
    return None if value > 0 else "must be more than zero"


def _ca_problem(path: str) -> str | None:
    """Why ``path`` cannot serve as a CA bundle, or None."""
    if not Path(path).is_file():
        return f"{path} is not a readable file"
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        return f"{path} holds no usable PEM certificate ({exc.__class__.__name__})"
    return None


def _path(text: str, base_dir: Path | None) -> Path:
    path = Path(text)
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def _credentials(
    value: Any, where: str, problems: list[str], base_dir: Path | None
) -> dict[str, Credentials]:
    out: dict[str, Credentials] = {}
    for i, item in enumerate(_list(value, where, problems)):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{here} must be a mapping, got {type(item).__name__}")
            continue
        unknown = set(item) - {"registry", "username", "password", "passwordFile"}
        if unknown:
            problems.append(f"{here}: unknown keys {sorted(map(str, unknown))}")
        registry = item.get("registry")
        username = item.get("username")
        if not isinstance(registry, str) or not _DOMAIN.fullmatch(registry):
            problems.append(f"{here}.registry must be a host[:port] string")
            continue
        if not isinstance(username, str) or not username or ":" in username:
            problems.append(f"{here}.username must be a non-empty string without ':'")
            continue
        has_pw, has_file = "password" in item, "passwordFile" in item
        if has_pw == has_file:
            problems.append(f"{here} needs exactly one of password or passwordFile")
            continue
        if has_pw:
            password = item["password"]
            if not isinstance(password, str) or not password:
                problems.append(f"{here}.password must be a non-empty string")
                continue
        else:
            path = item["passwordFile"]
            if not isinstance(path, str) or not path:
                problems.append(f"{here}.passwordFile must be a path string")
                continue
            try:
                password = _path(path, base_dir).read_text().strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{here}.passwordFile: cannot read {path}: {exc.__class__.__name__}")
                continue
            if not password:
                problems.append(f"{here}.passwordFile: {path} is empty")
                continue
        key = _registry_key(registry)
        if key in out:
            problems.append(f"{here}: registry {key} has credentials already")
            continue
        out[key] = Credentials(username, password)
    return out


def _registry_key(server: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``host:port/path`` -> ``host:port``."""
    s = server.strip()
    if "://" in s:
        s = s.split("://", 1)[1]
    s = s.split("/", 1)[0].lower()
    if s in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return s


def credentials_from_dockerconfigjson(data: bytes) -> dict[str, Credentials]:
    """Credentials from a ``.dockerconfigjson`` (or ``~/.docker/config.json``) document.

    Reads ``auths`` (or the whole document in the legacy ``.dockercfg``
    form): each entry's ``auth`` (base64 ``user:password``) or its
    ``username``/``password``. Keys are normalised to ``host[:port]``. Entries
    without usable credentials (identity tokens, credential helpers) are
    skipped. Raises :class:`FormatError` for a document that is not JSON of
    that shape; messages never contain the credentials.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError("docker config is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise FormatError("docker config must be a JSON object")
    # The legacy ``.dockercfg`` form is the ``auths`` mapping itself.
    auths = doc.get("auths", {}) if "auths" in doc or "credHelpers" in doc or "credsStore" in doc else doc
    if not isinstance(auths, dict):
        raise FormatError("docker config 'auths' must be an object")
    out: dict[str, Credentials] = {}
    for server, entry in auths.items():
        if not isinstance(entry, dict):
            raise FormatError(f"docker config auths[{str(server)[:80]!r}] must be an object")
        username = entry.get("username")
        password = entry.get("password")
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                decoded = base64.b64decode(auth, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise FormatError(f"docker config auths[{str(server)[:80]!r}].auth is not base64") from exc
            user, sep, pw = decoded.partition(":")
            if not sep:
                raise FormatError(f"docker config auths[{str(server)[:80]!r}].auth is not user:password")
            username, password = user, pw
        if isinstance(username, str) and username and isinstance(password, str) and password:
            out[_registry_key(str(server))] = Credentials(username, password)
    return out
