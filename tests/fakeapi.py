"""A SMALL LOCAL FAKE of the Kubernetes API server, for tests only.

There is no Kubernetes API server on the machines these tests run on, so the
cluster source and ``audit`` are tested against this stand-in: a plain HTTP
server on 127.0.0.1 (port 0) that speaks just enough of the real API for the
official ``kubernetes`` client to talk to it unchanged:

* discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/GROUP/VERSION``;
* GET of one object and list of a collection (all namespaces or one), for
  the resource types registered with :meth:`FakeApiServer.add_type`;
* ``limit``/``continue`` pagination with opaque tokens (a bad token is a 400,
  as on a real server), and equality-based ``labelSelector`` (``a=b``,
  ``a!=b``, ``a``, ``!a``);
* ``Status`` error bodies: 404 for missing objects or types, 403 for paths
  marked forbidden, 401 when a bearer token is required and absent;
* every request is recorded (method, path, query, whether it had a token).

It is not a faithful API server: no watch, no writes, no field selectors,
no set-based selectors, no resourceVersion semantics.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class _Type:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool


BUILTIN_TYPES = (
    ("", "v1", "Namespace", "namespaces", False, ["ns"]),
    ("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    ("", "v1", "Secret", "secrets", True, []),
    ("", "v1", "Service", "services", True, ["svc"]),
    ("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
    ("apps", "v1", "Deployment", "deployments", True, ["deploy"]),
    ("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"]),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, []),
)


class FakeApiServer:
    """Start with ``with FakeApiServer() as api:``; ``api.url`` is the base URL."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.types: dict[tuple[str, str], _Type] = {}
        self.forbidden: set[str] = set()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        for group, version, kind, plural, namespaced, shorts in BUILTIN_TYPES:
            self.add_type(group, version, kind, plural, namespaced=namespaced, short_names=shorts)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (and so each test's teardown) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    # -- set-up -------------------------------------------------------------

    def add_type(
        self,
        group: str,
        version: str,
        kind: str,
        plural: str,
        *,
        namespaced: bool = True,
        short_names: Iterable[str] = (),
    ) -> None:
        self.types[(group, plural)] = _Type(group, version, kind, plural, namespaced, list(short_names))

    def add(self, *objects: Mapping[str, Any]) -> None:
        """Store objects; their apiVersion/kind pick the type."""
        for obj in objects:
            api_version = obj["apiVersion"]
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            matches = [t for t in self.types.values() if t.group == group and t.kind == obj["kind"]]
            if not matches:
                raise KeyError(f"no fake type for {api_version} {obj['kind']}")
            stored = copy.deepcopy(dict(obj))
            meta = stored.setdefault("metadata", {})
            meta.setdefault("uid", f"uid-{len(matches[0].objects)}-{meta.get('name')}")
            meta.setdefault("resourceVersion", str(1000 + len(matches[0].objects)))
            with self._lock:
                matches[0].objects.append(stored)

    def forbid(self, path: str) -> None:
        """Answer 403 for this exact path."""
        self.forbidden.add(path)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- serving ------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                authorized = fake.token is None or self.headers.get("Authorization") == f"Bearer {fake.token}"
                with fake._lock:
                    fake.requests.append(Request("GET", path, query, authorized))
                if not authorized:
                    self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                elif path in fake.forbidden:
                    self._send(403, _status(403, "Forbidden", f"access to {path} is forbidden"))
                else:
                    code, body = fake._route(path, query)
                    self._send(code, body)

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        segs = [s for s in path.split("/") if s]
        if segs == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if segs == ["apis"]:
            return 200, self._group_list()
        if segs[:1] == ["api"] and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[:1] == ["apis"] and len(segs) >= 3:
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return 404, _status(404, "NotFound", f"the server could not find {path}")
        if not rest:
            return self._resource_list(group, version, path)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        rtype = self.types.get((group, plural))
        if rtype is None or rtype.version != version or len(rest) > 2:
            return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        with self._lock:
            objects = [
                o for o in rtype.objects if namespace is None or o["metadata"].get("namespace") == namespace
            ]
        if name is not None:
            for obj in objects:
                if obj["metadata"].get("name") == name:
                    return 200, obj
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        return self._list(rtype, objects, query)

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, str] = {}
        for t in self.types.values():
            if t.group:
                groups[t.group] = t.version
        return {
            "kind": "APIGroupList",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in sorted(groups.items())
            ],
        }

    def _resource_list(self, group: str, version: str, path: str) -> tuple[int, Any]:
        types = [t for t in self.types.values() if t.group == group and t.version == version]
        if not types:
            return 404, _status(404, "NotFound", f"the server could not find {path}")
        resources: list[dict[str, Any]] = []
        for t in types:
            resources.append(
                {
                    "name": t.plural,
                    "singularName": t.kind.lower(),
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "list", "watch", "create", "delete"],
                    "shortNames": t.short_names,
                }
            )
            resources.append(
                {"name": f"{t.plural}/status", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get"]}
            )
        gv = f"{group}/{version}" if group else version
        return 200, {"kind": "APIResourceList", "groupVersion": gv, "resources": resources}

    def _list(self, rtype: _Type, objects: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any]:
        selector = query.get("labelSelector")
        if selector:
            objects = [o for o in objects if _selects(selector, o["metadata"].get("labels") or {})]
        start = 0
        if query.get("continue"):
            try:
                start = int(
                    base64.urlsafe_b64decode(query["continue"].encode()).decode().removeprefix("offset:")
                )
            except ValueError:
                return 400, _status(400, "BadRequest", "continue key is not valid")
        limit = int(query.get("limit") or 0)
        end = len(objects) if limit <= 0 else start + limit
        page = objects[start:end]
        meta: dict[str, Any] = {"resourceVersion": "4242"}
        if end < len(objects):
            meta["continue"] = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode()
        items = []
        for obj in page:
            item = copy.deepcopy(obj)
            # A real list leaves apiVersion/kind out of the items.
            item.pop("apiVersion", None)
            item.pop("kind", None)
            items.append(item)
        gv = f"{rtype.group}/{rtype.version}" if rtype.group else rtype.version
        return 200, {"kind": f"{rtype.kind}List", "apiVersion": gv, "metadata": meta, "items": items}


def _selects(selector: str, labels: Mapping[str, str]) -> bool:
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.strip().rstrip("=")) != v.strip().lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
