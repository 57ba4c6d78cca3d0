"""The provider's one configuration file, validated completely at start-up.

The YAML file (camelCase keys) becomes a frozen :class:`Settings`. Every
problem is collected and raised at once in one :class:`ConfigError`; unknown
keys are problems too, so a typo never silently falls back to a default.
Relative file paths are resolved against the directory of the configuration
file. The format is documented in ``docs/configuration.md``.

``Settings.generation`` is a digest of everything a verdict depends on (trust
material, ignore rules, domain, limits, registries). Verdict caches key on it,
so a configuration change never serves a verdict of the old configuration.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from provider import __version__
from provider.core.annotations import DEFAULT_DOMAIN
from provider.core.bundle import BundleResolver
from provider.core.ignore import IgnoreRule, default_ignore_rules, parse_ignore_fields
from provider.core.keyless import KeylessIdentity, parse_identities
from provider.core.keys import PublicKey, load_public_key
from provider.core.limits import DEFAULT_LIMITS, Limits, MiB
from provider.core.safeyaml import load_documents
from provider.core.trustroot import TrustedRoot
from provider.core.verifier import TrustPolicy, Verifier
from provider.errors import ConfigError, FormatError, ManifestProviderError
from provider.sources.cluster import ClusterSettings
from provider.sources.oci import Credentials, RegistrySettings, credentials_from_dockerconfigjson

# Loads the public key held by a ``k8s://NAMESPACE/SECRET`` reference.
SecretLoader = Callable[[str], bytes]

_SECRET_REF = re.compile(
    r"^k8s://([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$"
)
_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
# Kubernetes limits one configuration document to what a ConfigMap can hold;
# anything larger is not a configuration file.
MAX_CONFIG_BYTES = 4 * MiB

_TOP_KEYS = frozenset(
    {
        "keys",
        "keyless",
        "ignoreFields",
        "builtinIgnoreFields",
        "annotationDomain",
        "limits",
        "registries",
        "cluster",
        "cache",
        "server",
    }
)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


# ``limits:`` keys are the camelCase names of the Limits fields.
_LIMIT_FIELDS = {_camel(f.name): f.name for f in fields(Limits)}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Where a trusted key came from (its material is in ``Settings.keys``)."""

    name: str
    source: str  # "path", "pem" or "secret"
    location: str  # file path, "inline" or the k8s:// reference


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The verdict cache: bounded by entries, each entry lives ``ttl_seconds``."""

    entries: int = 10_000
    ttl_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Mutual TLS material for the server; checked by whoever serves."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_dns_names: tuple[str, ...] = ()
    insecure_plain_http: bool = False

    def serving_problems(self) -> list[str]:
        """What is missing to serve mutual TLS (empty when plain HTTP was chosen)."""
        if self.insecure_plain_http:
            return []
        return [
            f"server.tls.{name} is required unless server.tls.insecurePlainHTTP is true"
            for name, value in (
                ("certFile", self.cert_file),
                ("keyFile", self.key_file),
                ("clientCAFile", self.client_ca_file),
            )
            if not value
        ]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """HTTP serving and per-request bounds."""

    # A provider in a pod listens on the pod's address.
    listen: str = "0.0.0.0:8443"
    # Plain-HTTP listener for kubelet probes (GET /healthz, /readyz only); None: off.
    health_listen: str | None = None
    provider_timeout_seconds: int = 3
    # Below the Gatekeeper Provider timeout so a late answer is still an answer.
    deadline_milliseconds: int = 2500
    max_body_bytes: int = 8 * MiB
    max_keys_per_request: int = 1000
    max_key_bytes: int = 1 * MiB
    workers: int = 2
    threads: int = 4
    keep_alive_seconds: int = 5
    reload_interval_seconds: float = 5.0
    # One access-log line per HTTP request, on top of the one line per key.
    access_log: bool = False
    tls: TlsSettings = field(default_factory=TlsSettings)


def default_deadline_milliseconds(provider_timeout_seconds: int) -> int:
    """The Provider timeout minus a margin for the network and Gatekeeper itself."""
    timeout_ms = provider_timeout_seconds * 1000
    return timeout_ms - max(100, min(500, timeout_ms // 6))


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration. Build it with :func:`load_settings`."""

    keys: tuple[PublicKey, ...] = ()
    key_specs: tuple[KeySpec, ...] = ()
    trusted_root: TrustedRoot | None = None
    trusted_root_path: str | None = None
    identities: tuple[KeylessIdentity, ...] = ()
    # Configured ignore rules only; ``rules`` adds the built-ins when enabled.
    ignore_rules: tuple[IgnoreRule, ...] = ()
    builtin_ignore_fields: bool = True
    annotation_domain: str = DEFAULT_DOMAIN
    limits: Limits = field(default_factory=Limits)
    registries: RegistrySettings | None = None
    # ConfigMap-held bundles and cluster access; None when the section is absent.
    cluster: ClusterSettings | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    # Digest of what verdicts depend on; see the module docstring.
    generation: str = ""
    # The configuration file and every file it names, for change detection.
    source_path: str | None = None
    watched_files: tuple[str, ...] = ()

    @property
    def rules(self) -> tuple[IgnoreRule, ...]:
        """The ignore rules in effect: built-ins (unless disabled) then configured ones."""
        builtin = default_ignore_rules(self.annotation_domain) if self.builtin_ignore_fields else ()
        return builtin + self.ignore_rules

    @property
    def trust(self) -> TrustPolicy:
        return TrustPolicy(keys=self.keys, identities=self.identities, trusted_root=self.trusted_root)

    def verifier(self, resolver: BundleResolver | None = None) -> Verifier:
        return build_verifier(self, resolver)

    @classmethod
    def default(cls) -> Settings:
        """No configuration at all: trusts nobody, so nothing verifies."""
        return parse_settings({})


def build_verifier(settings: Settings, resolver: BundleResolver | None = None) -> Verifier:
    """The core verifier for ``settings``; ``resolver`` fetches referenced bundles."""
    return Verifier(
        settings.trust,
        rules=settings.rules,
        limits=settings.limits,
        domain=settings.annotation_domain,
        resolver=resolver,
    )


# -- loading ----------------------------------------------------------------------


def load_settings(
    path: str | Path,
    *,
    secret_loader: SecretLoader | None = None,
    pull_secret_loader: SecretLoader | None = None,
) -> Settings:
    """Read and validate the configuration file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read configuration file: {exc.strerror or exc}"]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: configuration file is larger than {MAX_CONFIG_BYTES} bytes"])
    return settings_from_bytes(
        data,
        base_dir=path.parent,
        source_path=str(path),
        secret_loader=secret_loader,
        pull_secret_loader=pull_secret_loader,
    )


def settings_from_bytes(
    data: bytes,
    *,
    base_dir: Path | None = None,
    source_path: str | None = None,
    secret_loader: SecretLoader | None = None,
    pull_secret_loader: SecretLoader | None = None,
) -> Settings:
    """Validate configuration YAML held in memory."""
    where = source_path or "configuration"
    try:
        docs = load_documents(data, limits=DEFAULT_LIMITS)
    except FormatError as exc:
        raise ConfigError([f"{where}: {exc.diagnostics()}"]) from exc
    if len(docs) > 1:
        raise ConfigError([f"{where}: expected one YAML document, found {len(docs)}"])
    doc = docs[0] if docs else {}
    return parse_settings(
        doc,
        base_dir=base_dir,
        source_path=source_path,
        secret_loader=secret_loader,
        pull_secret_loader=pull_secret_loader,
    )


def parse_settings(
    doc: Any,
    *,
    base_dir: Path | None = None,
    source_path: str | None = None,
    secret_loader: SecretLoader | None = None,
    pull_secret_loader: SecretLoader | None = None,
) -> Settings:
    """Validate a parsed configuration document; raise ConfigError listing every problem.

    ``secret_loader`` reads the ``cosign.pub`` entry of a ``k8s://NS/SECRET``
    key reference; ``pull_secret_loader`` the docker config JSON of a
    ``registries.pullSecrets`` entry. Without them such references are problems.
    """
    parser = _Parser(base_dir or Path.cwd(), secret_loader, pull_secret_loader)
    return parser.parse(doc, source_path)


class _Parser:
    """Collects problems while reading each section; raises once at the end."""

    def __init__(
        self,
        base_dir: Path,
        secret_loader: SecretLoader | None,
        pull_secret_loader: SecretLoader | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.secret_loader = secret_loader
        self.pull_secret_loader = pull_secret_loader
        self.problems: list[str] = []
        self.files: list[str] = []
        # Bytes of referenced files, for the generation digest.
        self.material: dict[str, str] = {}

    # -- primitives ---------------------------------------------------------

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def mapping(self, value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(f"{where} must be a mapping, got {_type(value)}")
            return {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.problem(f"{where}: keys must be strings, got {_type(key)}")
            elif key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(f"{where}.{key}: unknown key (expected one of: {hint})")
            else:
                out[key] = item
        return out

    def integer(self, value: Any, where: str, default: int, *, minimum: int = 1) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.problem(f"{where} must be an integer >= {minimum}, got {_show(value)}")
            return default
        return value

    def number(self, value: Any, where: str, default: float, *, minimum: float = 0.0) -> float:
        if value is None:
            return default
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not value > minimum
        ):
            self.problem(f"{where} must be a number > {minimum:g}, got {_show(value)}")
            return default
        return float(value)

    def boolean(self, value: Any, where: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(f"{where} must be true or false, got {_show(value)}")
            return default
        return value

    def string(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{where} must be a non-empty string, got {_show(value)}")
            return None
        return value

    def read_file(self, value: Any, where: str, *, limit: int = MAX_CONFIG_BYTES) -> tuple[str, bytes] | None:
        name = self.string(value, where)
        if name is None:
            return None
        path = Path(name) if Path(name).is_absolute() else self.base_dir / name
        self.files.append(str(path))
        try:
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            self.problem(f"{where}: cannot read {path}: {exc.strerror or exc}")
            return None
        if len(data) > limit:
            self.problem(f"{where}: {path} is larger than {limit} bytes")
            return None
        return str(path), data

    # -- sections -----------------------------------------------------------

    def parse(self, doc: Any, source_path: str | None) -> Settings:
        if source_path is not None:
            self.files.append(source_path)
        top = self.mapping(doc, "configuration", _TOP_KEYS)
        keys, specs = self.keys(top.get("keys"))
        root, root_path, identities = self.keyless(top.get("keyless"))
        ignore_rules = self.ignore_fields(top.get("ignoreFields"))
        builtin = self.boolean(top.get("builtinIgnoreFields"), "builtinIgnoreFields", True)
        domain = self.domain(top.get("annotationDomain"))
        limits = self.limits(top.get("limits"))
        registries = self.registries(top.get("registries"))
        cluster = self.cluster(top.get("cluster"))
        cache = self.cache(top.get("cache"))
        server = self.server(top.get("server"))
        if self.problems:
            raise ConfigError(self.problems)
        generation = _generation(
            {
                "version": __version__,
                "keys": [[k.name, k.fingerprint] for k in keys],
                "keyless": {
                    "trustedRoot": self.material.get("trustedRoot"),
                    "identities": _jsonable(_get(top, "keyless", "identities")),
                },
                "ignoreFields": _jsonable(top.get("ignoreFields")),
                "builtinIgnoreFields": builtin,
                "annotationDomain": domain,
                "limits": {f.name: getattr(limits, f.name) for f in fields(Limits)},
                "registries": _jsonable(top.get("registries")),
                "cluster": _jsonable(top.get("cluster")),
            }
        )
        return Settings(
            keys=keys,
            key_specs=specs,
            trusted_root=root,
            trusted_root_path=root_path,
            identities=identities,
            ignore_rules=ignore_rules,
            builtin_ignore_fields=builtin,
            annotation_domain=domain,
            limits=limits,
            registries=registries,
            cluster=cluster,
            cache=cache,
            server=server,
            generation=generation,
            source_path=source_path,
            watched_files=tuple(dict.fromkeys(self.files)),
        )

    def keys(self, value: Any) -> tuple[tuple[PublicKey, ...], tuple[KeySpec, ...]]:
        if value is None:
            return (), ()
        if not isinstance(value, list):
            self.problem(f"keys must be a list, got {_type(value)}")
            return (), ()
        keys: list[PublicKey] = []
        specs: list[KeySpec] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            where = f"keys[{i}]"
            entry = self.mapping(item, where, frozenset({"name", "path", "pem", "secret"}))
            if not isinstance(item, Mapping):
                continue
            name = self.string(entry.get("name"), f"{where}.name")
            if "name" not in entry:
                self.problem(f"{where}.name is required")
            if name is not None:
                if name in seen:
                    self.problem(f"{where}.name: duplicate key name {name!r}")
                seen.add(name)
            sources = [s for s in ("path", "pem", "secret") if s in entry]
            if len(sources) != 1:
                found = ", ".join(sources) or "none"
                self.problem(f"{where}: needs exactly one of path, pem, secret (found: {found})")
                continue
            source = sources[0]
            loaded = self.key_material(source, entry[source], f"{where}.{source}")
            if loaded is None or name is None:
                continue
            location, data = loaded
            try:
                keys.append(load_public_key(data, name=name))
            except ManifestProviderError as exc:
                self.problem(f"{where}: cannot load public key {name!r}: {exc.diagnostics()}")
                continue
            specs.append(KeySpec(name=name, source=source, location=location))
        return tuple(keys), tuple(specs)

    def key_material(self, source: str, value: Any, where: str) -> tuple[str, bytes] | None:
        if source == "path":
            return self.read_file(value, where, limit=64 * 1024)
        text = self.string(value, where)
        if text is None:
            return None
        if source == "pem":
            return "inline", text.encode("utf-8")
        if not _SECRET_REF.match(text):
            self.problem(f"{where} must look like k8s://NAMESPACE/SECRET, got {_show(text)}")
            return None
        if self.secret_loader is None:
            self.problem(f"{where}: Secret-held keys need cluster access, which is not available here")
            return None
        try:
            return text, self.secret_loader(text)
        except ManifestProviderError as exc:
            self.problem(f"{where}: cannot load {text}: {exc.diagnostics()}")
        except Exception as exc:  # a loader's own failure must not hide the other problems
            self.problem(f"{where}: cannot load {text}: {type(exc).__name__}")
        return None

    def keyless(self, value: Any) -> tuple[TrustedRoot | None, str | None, tuple[KeylessIdentity, ...]]:
        if value is None:
            return None, None, ()
        section = self.mapping(value, "keyless", frozenset({"trustedRoot", "identities"}))
        if not isinstance(value, Mapping):
            return None, None, ()
        root: TrustedRoot | None = None
        root_path: str | None = None
        if "trustedRoot" not in section:
            self.problem("keyless.trustedRoot is required (a trusted_root.json file)")
        else:
            loaded = self.read_file(section["trustedRoot"], "keyless.trustedRoot")
            if loaded is not None:
                root_path, data = loaded
                self.material["trustedRoot"] = hashlib.sha256(data).hexdigest()
                try:
                    root = TrustedRoot.from_json(data, where=f"keyless.trustedRoot {root_path}")
                except ConfigError as exc:
                    self.problems.extend(exc.problems)
                except ManifestProviderError as exc:
                    self.problem(f"keyless.trustedRoot: {root_path}: {exc.diagnostics()}")
        identities: tuple[KeylessIdentity, ...] = ()
        raw = section.get("identities")
        if not raw:
            self.problem("keyless.identities must list at least one trusted identity")
        else:
            try:
                identities = parse_identities(raw, where="keyless.identities")
            except ConfigError as exc:
                self.problems.extend(exc.problems)
        return root, root_path, identities

    def ignore_fields(self, value: Any) -> tuple[IgnoreRule, ...]:
        if value is None:
            return ()
        try:
            return parse_ignore_fields(value, where="ignoreFields")
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return ()

    def domain(self, value: Any) -> str:
        if value is None:
            return DEFAULT_DOMAIN
        if not isinstance(value, str) or len(value) > 253 or not _DOMAIN.match(value):
            self.problem(f"annotationDomain must be a lower-case DNS name, got {_show(value)}")
            return DEFAULT_DOMAIN
        return value

    def limits(self, value: Any) -> Limits:
        section = self.mapping(value, "limits", frozenset(_LIMIT_FIELDS))
        defaults = Limits()
        chosen = {
            _LIMIT_FIELDS[key]: self.integer(item, f"limits.{key}", getattr(defaults, _LIMIT_FIELDS[key]))
            for key, item in section.items()
        }
        return Limits(**chosen)

    def registries(self, value: Any) -> RegistrySettings | None:
        if value is None:
            return None
        pull_refs: list[str] = []
        if isinstance(value, Mapping) and "pullSecrets" in value:
            pull_refs = self.pull_secret_refs(value["pullSecrets"])
            value = {k: v for k, v in value.items() if k != "pullSecrets"}
        try:
            settings = RegistrySettings.from_mapping(value, where="registries", base_dir=self.base_dir)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None
        credentials: dict[str, Credentials] = {}
        for index, ref in enumerate(pull_refs):
            where = f"registries.pullSecrets[{index}]"
            if self.pull_secret_loader is None:
                self.problem(f"{where}: pull secrets need cluster access, which is not available here")
                continue
            try:
                found = credentials_from_dockerconfigjson(self.pull_secret_loader(ref))
            except ManifestProviderError as exc:
                self.problem(f"{where}: cannot read {ref}: {exc.diagnostics()}")
                continue
            # Earlier secrets win, as the configured credentials win over all of them.
            for registry, creds in found.items():
                credentials.setdefault(registry, creds)
        return settings.with_credentials(credentials) if credentials else settings

    def pull_secret_refs(self, value: Any) -> list[str]:
        """``registries.pullSecrets``: ``k8s://NAMESPACE/SECRET`` references to dockerconfigjson Secrets."""
        if not isinstance(value, list):
            self.problem(f"registries.pullSecrets must be a list, got {type(value).__name__}")
            return []
        refs: list[str] = []
        for index, item in enumerate(value):
            text = self.string(item, f"registries.pullSecrets[{index}]")
            if text is None:
                continue
            if not _SECRET_REF.match(text):
                self.problem(
                    f"registries.pullSecrets[{index}] must look like k8s://NAMESPACE/SECRET, got {_show(text)}"
                )
                continue
            refs.append(text)
        return refs

    def cluster(self, value: Any) -> ClusterSettings | None:
        if value is None:
            return None
        try:
            return ClusterSettings.from_mapping(value, where="cluster")
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def cache(self, value: Any) -> CacheSettings:
        section = self.mapping(value, "cache", frozenset({"entries", "ttlSeconds"}))
        defaults = CacheSettings()
        return CacheSettings(
            entries=self.integer(section.get("entries"), "cache.entries", defaults.entries, minimum=0),
            ttl_seconds=self.number(section.get("ttlSeconds"), "cache.ttlSeconds", defaults.ttl_seconds),
        )

    def server(self, value: Any) -> ServerSettings:
        allowed = frozenset(
            {
                "listen",
                "healthListen",
                "deadlineMilliseconds",
                "providerTimeoutSeconds",
                "maxBodyBytes",
                "maxKeysPerRequest",
                "maxKeyBytes",
                "workers",
                "threads",
                "keepAliveSeconds",
                "reloadIntervalSeconds",
                "accessLog",
                "tls",
            }
        )
        s = self.mapping(value, "server", allowed)
        d = ServerSettings()
        listen = self.string(s.get("listen"), "server.listen") or d.listen
        if not _valid_listen(listen):
            self.problem(f"server.listen must be HOST:PORT with a port 1-65535, got {_show(listen)}")
        health_listen = self.string(s.get("healthListen"), "server.healthListen")
        if health_listen is not None:
            if not _valid_listen(health_listen):
                self.problem(
                    f"server.healthListen must be HOST:PORT with a port 1-65535, got {_show(health_listen)}"
                )
            elif _valid_listen(listen) and _port(health_listen) == _port(listen):
                self.problem(
                    f"server.healthListen ({health_listen}) must use another port than server.listen ({listen})"
                )
        timeout = self.integer(
            s.get("providerTimeoutSeconds"), "server.providerTimeoutSeconds", d.provider_timeout_seconds
        )
        deadline = self.integer(
            s.get("deadlineMilliseconds"),
            "server.deadlineMilliseconds",
            default_deadline_milliseconds(timeout),
        )
        if deadline >= timeout * 1000:
            self.problem(
                f"server.deadlineMilliseconds ({deadline}) must be below "
                f"server.providerTimeoutSeconds ({timeout} s = {timeout * 1000} ms), "
                "or Gatekeeper gives up before the provider answers"
            )
        reload_interval = d.reload_interval_seconds
        if "reloadIntervalSeconds" in s:
            raw = s["reloadIntervalSeconds"]
            if raw == 0 and not isinstance(raw, bool):
                reload_interval = 0.0
            else:
                reload_interval = self.number(raw, "server.reloadIntervalSeconds", d.reload_interval_seconds)
        return ServerSettings(
            listen=listen,
            health_listen=health_listen,
            provider_timeout_seconds=timeout,
            deadline_milliseconds=deadline,
            max_body_bytes=self.integer(s.get("maxBodyBytes"), "server.maxBodyBytes", d.max_body_bytes),
            max_keys_per_request=self.integer(
                s.get("maxKeysPerRequest"), "server.maxKeysPerRequest", d.max_keys_per_request
            ),
            max_key_bytes=self.integer(s.get("maxKeyBytes"), "server.maxKeyBytes", d.max_key_bytes),
            workers=self.integer(s.get("workers"), "server.workers", d.workers),
            threads=self.integer(s.get("threads"), "server.threads", d.threads),
            keep_alive_seconds=self.integer(
                s.get("keepAliveSeconds"), "server.keepAliveSeconds", d.keep_alive_seconds
            ),
            reload_interval_seconds=reload_interval,
            access_log=self.boolean(s.get("accessLog"), "server.accessLog", d.access_log),
            tls=self.tls(s.get("tls")),
        )

    def tls(self, value: Any) -> TlsSettings:
        allowed = frozenset({"certFile", "keyFile", "clientCAFile", "clientDNSNames", "insecurePlainHTTP"})
        s = self.mapping(value, "server.tls", allowed)
        files: dict[str, str | None] = {}
        for key in ("certFile", "keyFile", "clientCAFile"):
            name = self.string(s.get(key), f"server.tls.{key}")
            if name is not None:
                path = Path(name) if Path(name).is_absolute() else self.base_dir / name
                name = str(path)
                self.files.append(name)
                if not path.is_file():
                    self.problem(f"server.tls.{key}: {name} is not a readable file")
            files[key] = name
        if bool(files.get("certFile")) != bool(files.get("keyFile")):
            self.problem("server.tls.certFile and server.tls.keyFile must be given together")
        names: list[str] = []
        raw_names = s.get("clientDNSNames")
        if raw_names is not None:
            if not isinstance(raw_names, list):
                self.problem(f"server.tls.clientDNSNames must be a list, got {_type(raw_names)}")
            else:
                for i, item in enumerate(raw_names):
                    got = self.string(item, f"server.tls.clientDNSNames[{i}]")
                    if got is not None:
                        names.append(got)
        plain = self.boolean(s.get("insecurePlainHTTP"), "server.tls.insecurePlainHTTP", False)
        return TlsSettings(
            cert_file=files.get("certFile"),
            key_file=files.get("keyFile"),
            client_ca_file=files.get("clientCAFile"),
            client_dns_names=tuple(names),
            insecure_plain_http=plain,
        )


# -- helpers ------------------------------------------------------------------------


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def _valid_listen(listen: str) -> bool:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        return False
    return 0 < int(port) < 65536 and (host == "" or not any(c.isspace() for c in host))


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _jsonable(value: Any) -> Any:
    """YAML may hold dates and other scalars JSON lacks; render them as text."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def _generation(material: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(material, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()[:32]


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
