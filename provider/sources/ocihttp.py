"""HTTP for the OCI distribution API, with the registry treated as hostile.

:class:`Transport` is the only place that opens connections. For every
request it:

1. allows ``http`` only for ``host:port`` entries of ``insecure``;
2. resolves the host and checks *every* address: loopback, private,
   link-local, CGNAT, multicast and other non-global addresses (and
   cluster-internal names) are refused unless the settings allow them, and
   the connection goes to the checked address (so a second DNS answer cannot
   swap it);
3. follows at most :data:`MAX_REDIRECTS` redirects, and only to the same
   scheme, host and port;
4. applies connect and read timeouts plus a whole-request deadline of
   ``connect + 3 x read`` seconds, with urllib3's retries disabled;
5. reads bodies in chunks and stops as soon as a size limit is passed,
   whatever ``Content-Length`` claimed (chunked bodies included).

:class:`RegistryClient` adds the distribution API and its authentication:
anonymous, basic (after a ``Basic`` challenge, when credentials are
configured) and bearer tokens (``WWW-Authenticate: Bearer realm=...`` ->
token endpoint with ``scope=repository:NAME:pull``). Error messages name
hosts and paths, never credentials or tokens.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
import urllib3.exceptions

from provider.core.limits import KiB
from provider.errors import FormatError, LimitExceededError, ReferenceNotAllowedError, SourceError
from provider.sources.ocisettings import RegistrySettings, is_internal_name

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
MAX_ERROR_BODY_BYTES = 4 * KiB
MAX_TOKEN_RESPONSE_BYTES = 64 * KiB
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * KiB
_USER_AGENT = "manifest-provider"

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    url: str


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _is_public(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class Transport:
    """Connections under the settings' network policy (see the module docstring)."""

    def __init__(self, settings: RegistrySettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._ssl = ssl.create_default_context()
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.ca_file:
            try:
                self._ssl.load_verify_locations(cafile=settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError(f"cannot load registry CA file {settings.ca_file}: {exc}") from exc
        self._unverified = ssl.create_default_context()
        self._unverified.check_hostname = False
        self._unverified.verify_mode = ssl.CERT_NONE
        self._timeout = urllib3.Timeout(
            connect=settings.connect_timeout_seconds, read=settings.read_timeout_seconds
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    # -- policy ------------------------------------------------------------------------------

    def _check_url(self, url: str) -> urllib.parse.SplitResult:
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ReferenceNotAllowedError(f"registry URL for {parts.hostname} carries user-info; refused")
        host = (parts.hostname or "").lower()
        if not host:
            raise SourceError("registry URL has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise SourceError(f"registry URL for {host} has an invalid port") from exc
        netloc = host if port is None else f"{host}:{port}"
        if parts.scheme == "http":
            if not self._settings.is_insecure(netloc):
                raise ReferenceNotAllowedError(
                    f"plain HTTP to {netloc} refused: only hosts listed in registries.insecure may use it"
                )
        elif parts.scheme != "https":
            raise ReferenceNotAllowedError(f"URL scheme {parts.scheme!r} for {netloc} refused")
        return parts

    def _resolve(self, host: str, port: int) -> str:
        """The address to connect to, after checking every address the name has."""
        private_ok = self._settings.private_target_allowed(host)
        if is_internal_name(host) and not private_ok:
            raise ReferenceNotAllowedError(
                f"registry host {host} is a cluster-internal or local name; "
                "list it in registries.allow or set registries.allowPrivateNetworks"
            )
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise SourceError(f"cannot resolve registry host {host}: {exc.__class__.__name__}") from exc
        addrs = [str(info[4][0]) for info in infos]
        if not addrs:
            raise SourceError(f"registry host {host} has no addresses")
        if not private_ok:
            for addr in addrs:
                if not _is_public(addr):
                    raise ReferenceNotAllowedError(
                        f"registry host {host} resolves to non-public address {addr}; "
                        "set registries.allowPrivateNetworks or list the address in registries.allow"
                    )
        return addrs[0]

    def _pool(self, scheme: str, host: str, port: int) -> urllib3.HTTPConnectionPool:
        addr = self._resolve(host, port)
        key = (scheme, addr, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                common: dict[str, Any] = {
                    "timeout": self._timeout,
                    "maxsize": 8,
                    "block": False,
                    "retries": False,
                }
                if scheme == "https":
                    netloc = host if port == 443 else f"{host}:{port}"
                    unverified = netloc in self._settings.unverified_tls
                    context = self._unverified if unverified else self._ssl
                    if unverified:
                        log.warning(
                            "TLS certificate of registry %s is not checked (insecure registry)", netloc
                        )
                    pool = urllib3.HTTPSConnectionPool(
                        addr,
                        port,
                        ssl_context=context,
                        server_hostname=host,
                        cert_reqs="CERT_NONE" if unverified else "CERT_REQUIRED",
                        assert_hostname=False if unverified else None,
                        **common,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(addr, port, **common)
                self._pools[key] = pool
            return pool

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        max_bytes: int,
        what: str,
    ) -> Response:
        """One request, following same-origin redirects; bodies over ``max_bytes`` raise."""
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            resp = self._once(method, current, headers=headers, body=body, max_bytes=max_bytes, what=what)
            if resp.status not in _REDIRECT_CODES or method not in ("GET", "HEAD"):
                return resp
            location = resp.headers.get("location")
            if not location:
                raise SourceError(f"{what}: redirect {resp.status} without Location")
            target = urllib.parse.urljoin(current, location)
            if _origin(urllib.parse.urlsplit(target)) != _origin(urllib.parse.urlsplit(current)):
                dest = urllib.parse.urlsplit(target).netloc or "?"
                raise ReferenceNotAllowedError(
                    f"{what}: registry redirected to another host ({dest[:100]}); not followed"
                )
            current = target
        raise SourceError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _once(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        max_bytes: int,
        what: str,
    ) -> Response:
        parts = self._check_url(url)
        scheme, host, port = _origin(parts)
        pool = self._pool(scheme, host, port)
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        send = {"Host": netloc, "User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        send.update(headers or {})
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        deadline = time.monotonic() + self._settings.connect_timeout_seconds
        deadline += 3 * self._settings.read_timeout_seconds
        try:
            with warnings.catch_warnings():
                # Unverified TLS happens only when asked for, and is logged once per pool above.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                raw = pool.urlopen(
                    method,
                    target,
                    body=body,
                    headers=send,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                )
        except urllib3.exceptions.SSLError as exc:
            raise SourceError(f"{what}: TLS handshake with {netloc} failed: {_short(exc)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(f"{what}: request to {netloc} failed: {_short(exc)}") from exc
        try:
            resp_headers = {k.lower(): v for k, v in raw.headers.items()}
            if method == "HEAD":
                data = b""
            elif 200 <= raw.status < 300:
                data = self._read(raw, max_bytes, deadline, what=what, netloc=netloc)
            else:
                # Error bodies only feed the error message: keep their start, drop the rest.
                data = self._read(
                    raw, MAX_ERROR_BODY_BYTES, deadline, what=what, netloc=netloc, truncate=True
                )
        finally:
            raw.release_conn()
        return Response(raw.status, resp_headers, data, url)

    def _read(
        self,
        raw: urllib3.BaseHTTPResponse,
        limit: int,
        deadline: float,
        *,
        what: str,
        netloc: str,
        truncate: bool = False,
    ) -> bytes:
        declared = raw.headers.get("Content-Length")
        if not truncate and declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raw.close()
            raise LimitExceededError(
                f"{what}: {netloc} announced {int(declared)} bytes; the limit is {limit}"
            )
        chunks: list[bytes] = []
        total = 0
        try:
            while True:
                # read1 returns what has arrived, so a trickling server meets the deadline check.
                chunk = raw.read1(_CHUNK, decode_content=False)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raw.close()
                    if truncate:
                        chunks.append(chunk[: len(chunk) - (total - limit)])
                        break
                    raise LimitExceededError(f"{what}: {netloc} sent more than {limit} bytes")
                if time.monotonic() > deadline:
                    raw.close()
                    raise SourceError(f"{what}: {netloc} did not finish sending in time")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raw.close()
            raise SourceError(f"{what}: reading from {netloc} failed: {_short(exc)}") from exc
        return b"".join(chunks)


def _short(exc: BaseException) -> str:
    text = f"{exc.__class__.__name__}: {exc}"
    # urllib3 messages can embed pool reprs; keep them short and single-line.
    return " ".join(text.split())[:200]


# --- authentication -----------------------------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y"`` -> (``bearer``, {realm: x, service: y})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


@dataclass(frozen=True, slots=True)
class _Auth:
    header: str | None
    expires_at: float


class NotFoundError(SourceError):
    """The registry answered 404 (callers decide what absence means)."""


class RegistryClient:
    """The distribution API on one settings object; tokens are cached per repository and scope."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.transport = transport or Transport(settings)
        self._clock = clock
        self._lock = threading.Lock()
        self._auth: dict[tuple[str, str], _Auth] = {}
        self._schemes: dict[str, str] = {}

    def base_url(self, registry: str) -> str:
        if not self.settings.is_insecure(registry):
            return f"https://{registry}"
        if registry.lower() not in self.settings.unverified_tls:
            return f"http://{registry}"
        with self._lock:
            known = self._schemes.get(registry)
        if known is None:
            known = self._probe_scheme(registry)
            with self._lock:
                self._schemes[registry] = known
        return f"{known}://{registry}"

    def _probe_scheme(self, registry: str) -> str:
        """HTTPS (certificates unchecked) when the registry speaks TLS, else plain HTTP."""
        try:
            self.transport.request(
                "GET", f"https://{registry}/v2/", max_bytes=MAX_ERROR_BODY_BYTES, what="probe"
            )
        except SourceError:
            return "http"
        return "https"

    def call(
        self,
        method: str,
        registry: str,
        repository: str,
        path_or_url: str,
        *,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        max_bytes: int,
        what: str,
    ) -> Response:
        """A request with authentication; a 401 is answered once with the challenge's scheme."""
        base = self.base_url(registry)
        url = path_or_url if "://" in path_or_url else base + path_or_url
        if _origin(urllib.parse.urlsplit(url)) != _origin(urllib.parse.urlsplit(base)):
            raise ReferenceNotAllowedError(f"{what}: registry sent a URL on another host; not followed")
        scope = f"repository:{repository}:" + ("pull,push" if push else "pull")
        key = (registry, scope)
        cached = self._cached_auth(key)
        send = dict(headers or {})
        if cached is not None and cached.header:
            send["Authorization"] = cached.header
        resp = self.transport.request(method, url, headers=send, body=body, max_bytes=max_bytes, what=what)
        if resp.status != 401:
            return resp
        challenge = resp.headers.get("www-authenticate", "")
        auth = self._authenticate(registry, scope, challenge, what=what)
        with self._lock:
            self._auth[key] = auth
        if auth.header is None:
            raise SourceError(f"{what}: {registry} requires authentication and none is configured")
        send["Authorization"] = auth.header
        resp = self.transport.request(method, url, headers=send, body=body, max_bytes=max_bytes, what=what)
        if resp.status == 401:
            with self._lock:
                self._auth.pop(key, None)
            raise SourceError(f"{what}: {registry} refused the configured credentials (401)")
        return resp

    def _cached_auth(self, key: tuple[str, str]) -> _Auth | None:
        with self._lock:
            auth = self._auth.get(key)
            if auth is not None and auth.expires_at <= self._clock():
                del self._auth[key]
                return None
            return auth

    def _authenticate(self, registry: str, scope: str, challenge: str, *, what: str) -> _Auth:
        scheme, params = parse_challenge(challenge)
        creds = self.settings.credentials_for(registry)
        if scheme == "basic":
            if creds is None:
                return _Auth(None, self._clock())
            pair = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            return _Auth(f"Basic {pair}", self._clock() + 3600)
        if scheme != "bearer":
            raise SourceError(f"{what}: {registry} asked for unsupported authentication {scheme[:20]!r}")
        realm = params.get("realm", "")
        realm_parts = urllib.parse.urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.hostname:
            raise SourceError(f"{what}: {registry} sent a bearer challenge without a usable realm")
        query = [("scope", scope)]
        if "service" in params:
            query.insert(0, ("service", params["service"]))
        sep = "&" if realm_parts.query else "?"
        url = realm + sep + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if creds is not None:
            if realm_parts.scheme != "https" and not self.settings.is_insecure(realm_parts.netloc.lower()):
                raise ReferenceNotAllowedError(f"{what}: token realm of {registry} is plain HTTP; refused")
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        try:
            resp = self.transport.request(
                "GET", url, headers=headers, max_bytes=MAX_TOKEN_RESPONSE_BYTES, what=f"{what} (token)"
            )
        except FormatError as exc:  # an oversized token answer is the registry's fault, not the object's
            raise SourceError(exc.diagnostics()) from exc
        if resp.status != 200:
            raise SourceError(
                f"{what}: token endpoint {realm_parts.netloc} answered {resp.status} for scope {scope}"
            )
        try:
            doc = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SourceError(f"{what}: token endpoint {realm_parts.netloc} sent invalid JSON") from exc
        token: Any = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", token):
            raise SourceError(f"{what}: token endpoint {realm_parts.netloc} sent no usable token")
        expires_in = doc.get("expires_in", 60)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = 60
        # Refresh a little early; never keep a token longer than five minutes.
        lifetime = max(1.0, min(float(expires_in), 300.0) - 5.0)
        return _Auth(f"Bearer {token}", self._clock() + lifetime)

    # -- distribution API --------------------------------------------------------------------

    def get_manifest(self, registry: str, repository: str, object_id: str) -> tuple[bytes, str]:
        """(manifest bytes, content type). 404 raises :class:`NotFoundError`."""
        what = f"manifest {registry}/{repository}:{object_id}"
        resp = self.call(
            "GET",
            registry,
            repository,
            f"/v2/{repository}/manifests/{object_id}",
            headers={"Accept": MANIFEST_ACCEPT},
            max_bytes=self.settings.max_manifest_bytes,
            what=what,
        )
        if resp.status == 404:
            raise NotFoundError(f"{what}: not found (404)")
        _expect(resp, (200,), what)
        content_type = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        return resp.body, content_type

    def get_blob(self, registry: str, repository: str, digest: str, *, size: int, max_bytes: int) -> bytes:
        """A blob whose length and sha256 are checked against its descriptor."""
        what = f"blob {registry}/{repository}@{digest}"
        if size > max_bytes:
            raise LimitExceededError(f"{what}: descriptor size {size} exceeds the limit {max_bytes}")
        resp = self.call(
            "GET",
            registry,
            repository,
            f"/v2/{repository}/blobs/{digest}",
            max_bytes=max_bytes,
            what=what,
        )
        if resp.status == 404:
            raise NotFoundError(f"{what}: not found (404)")
        _expect(resp, (200,), what)
        if len(resp.body) != size:
            raise FormatError(f"{what}: expected {size} bytes as the descriptor says, got {len(resp.body)}")
        found = sha256_digest(resp.body)
        if found != digest:
            raise FormatError(f"{what}: content hashes to {found}, not to its descriptor digest")
        return resp.body

    def blob_exists(self, registry: str, repository: str, digest: str) -> bool:
        what = f"blob {registry}/{repository}@{digest}"
        resp = self.call(
            "HEAD",
            registry,
            repository,
            f"/v2/{repository}/blobs/{digest}",
            push=True,
            max_bytes=0,
            what=what,
        )
        return resp.status == 200

    def upload_blob(self, registry: str, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(registry, repository, digest):
            return digest
        what = f"upload to {registry}/{repository}"
        start = self.call(
            "POST",
            registry,
            repository,
            f"/v2/{repository}/blobs/uploads/",
            push=True,
            headers={"Content-Length": "0"},
            body=b"",
            max_bytes=MAX_ERROR_BODY_BYTES,
            what=what,
        )
        _expect(start, (202,), what)
        location = start.headers.get("location")
        if not location:
            raise SourceError(f"{what}: registry gave no upload location")
        url = urllib.parse.urljoin(self.base_url(registry) + "/", location)
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        url += sep + urllib.parse.urlencode({"digest": digest})
        done = self.call(
            "PUT",
            registry,
            repository,
            url,
            push=True,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            body=data,
            max_bytes=MAX_ERROR_BODY_BYTES,
            what=what,
        )
        _expect(done, (201,), what)
        return digest

    def put_manifest(self, registry: str, repository: str, tag: str, data: bytes, media_type: str) -> str:
        what = f"manifest push {registry}/{repository}:{tag}"
        resp = self.call(
            "PUT",
            registry,
            repository,
            f"/v2/{repository}/manifests/{tag}",
            push=True,
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=data,
            max_bytes=MAX_ERROR_BODY_BYTES,
            what=what,
        )
        _expect(resp, (201,), what)
        return sha256_digest(data)


def _expect(resp: Response, ok: tuple[int, ...], what: str) -> None:
    if resp.status in ok:
        return
    code = ""
    try:
        doc = json.loads(resp.body[:MAX_ERROR_BODY_BYTES])
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = f" ({str(errors[0].get('code', ''))[:40]})"
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    raise SourceError(f"{what}: registry answered {resp.status}{code}, expected {'/'.join(map(str, ok))}")
