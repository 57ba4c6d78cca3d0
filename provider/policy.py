"""Evaluate Gatekeeper ConstraintTemplates offline, the way Gatekeeper does.

Gatekeeper's own test tool cannot call external data providers, so a template
that asks manifest-provider for a verdict cannot be tested before it reaches a
cluster. This module closes that gap:

* :class:`Template` and :class:`Constraint` read the Kubernetes objects;
* :func:`admission_review` / :func:`audit_review` build ``input.review`` as
  the webhook and the audit controller do;
* :class:`ExternalData` is Gatekeeper's ``external_data`` builtin: it POSTs a
  ``ProviderRequest`` to a provider (over mutual TLS, or in-process through
  the provider's own request handler) and turns the ``ProviderResponse`` into
  the value Rego sees (``responses``, ``errors``, ``status_code``,
  ``system_error``); a transport failure gives null ``responses``/``errors``;
* :class:`PolicyEvaluator` runs a template's Rego with a real engine (regorus,
  Rego v0 and v1; or OPA through its Python bindings, Rego v1) against each
  constraint and reports violations with the constraint's enforcement action.

Engines are imported lazily: only the one asked for must be installed.
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from provider.errors import InputError, SourceError

logger = logging.getLogger(__name__)

ADMISSION_TARGET = "admission.k8s.gatekeeper.sh"
PROVIDER_API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
VALIDATION_POINT = "validation.gatekeeper.sh"
AUDIT_POINT = "audit.gatekeeper.sh"
# A provider answer larger than this is not an answer (Gatekeeper bounds it by
# its own memory; an offline tool should not).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 3.0
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.MULTILINE)
_VIOLATION_RULE = re.compile(r"^violation\b", re.MULTILINE)


class EngineKind(enum.StrEnum):
    REGORUS = "regorus"
    OPA = "opa"


class EnforcementAction(enum.StrEnum):
    DENY = "deny"
    WARN = "warn"
    DRYRUN = "dryrun"


class Operation(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


# -- templates and constraints --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """The Rego of one ConstraintTemplate's admission target."""

    name: str
    kind: str
    package: str
    rego: str
    rego_version: str  # "v1" or "v0"

    @classmethod
    def from_mapping(cls, doc: Any, *, where: str = "template") -> Template:
        if not isinstance(doc, Mapping) or doc.get("kind") != "ConstraintTemplate":
            raise InputError(f"{where}: not a ConstraintTemplate")
        spec = _mapping(doc.get("spec"), f"{where}: spec")
        kind = _nested(spec, ("crd", "spec", "names", "kind"))
        if not isinstance(kind, str) or not kind:
            raise InputError(f"{where}: spec.crd.spec.names.kind is missing")
        targets = spec.get("targets")
        if not isinstance(targets, list):
            raise InputError(f"{where}: spec.targets must be a list")
        target = next(
            (t for t in targets if isinstance(t, Mapping) and t.get("target") == ADMISSION_TARGET), None
        )
        if target is None:
            raise InputError(f"{where}: no target {ADMISSION_TARGET}")
        rego, version = _target_rego(target, where)
        match = _PACKAGE.search(rego)
        if match is None:
            raise InputError(f"{where}: the Rego has no package line")
        if _VIOLATION_RULE.search(rego) is None:
            raise InputError(f"{where}: the Rego defines no violation rule")
        name = _nested(doc, ("metadata", "name"))
        if name != kind.lower():
            # Gatekeeper refuses a template whose name is not its kind in lower case.
            raise InputError(f"{where}: metadata.name must be {kind.lower()!r}, got {name!r}")
        return cls(
            name=name,
            kind=kind,
            package=match.group(1),
            rego=rego,
            rego_version=version,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Template:
        return cls.from_mapping(_single_document(path), where=str(path))


def _target_rego(target: Mapping[str, Any], where: str) -> tuple[str, str]:
    code = target.get("code")
    rego_entries = [c for c in code if isinstance(c, Mapping) and c.get("engine") == "Rego"] if code else []
    legacy = target.get("rego")
    if len(rego_entries) + (1 if legacy else 0) > 1:
        # Gatekeeper refuses a template that defines its Rego twice.
        raise InputError(f"{where}: the Rego is given more than once (code[Rego] and rego)")
    if rego_entries:
        source = _mapping(rego_entries[0].get("source"), f"{where}: code[Rego].source")
        rego = source.get("rego")
        version = source.get("version") or "v0"
        if version not in ("v0", "v1"):
            raise InputError(f"{where}: code[Rego].source.version must be v0 or v1, got {version!r}")
        if source.get("libs"):
            raise InputError(f"{where}: code[Rego].source.libs is not supported")
    else:
        rego, version = legacy, "v0"
    if not isinstance(rego, str) or not rego.strip():
        raise InputError(f"{where}: no Rego source in the admission target")
    return rego, str(version)


@dataclass(frozen=True, slots=True)
class Match:
    """The parts of ``spec.match`` that can be decided without a cluster."""

    kinds: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()
    namespaces: tuple[str, ...] = ()
    excluded_namespaces: tuple[str, ...] = ()
    scope: str = "*"
    name: str = ""
    label_selector: Mapping[str, Any] = field(default_factory=dict)
    # Criteria that need the cluster (Namespace objects) and are treated as matching.
    unevaluated: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Any) -> Match:
        if not isinstance(data, Mapping):
            return cls()
        kinds = []
        for entry in data.get("kinds") or ():
            if isinstance(entry, Mapping):
                kinds.append(
                    (frozenset(entry.get("apiGroups") or ("*",)), frozenset(entry.get("kinds") or ("*",)))
                )
        return cls(
            kinds=tuple(kinds),
            namespaces=tuple(str(n) for n in data.get("namespaces") or ()),
            excluded_namespaces=tuple(str(n) for n in data.get("excludedNamespaces") or ()),
            scope=str(data.get("scope") or "*"),
            name=str(data.get("name") or ""),
            label_selector=dict(data.get("labelSelector") or {}),
            unevaluated=tuple(k for k in ("namespaceSelector",) if data.get(k)),
        )

    def matches(self, obj: Mapping[str, Any], namespace: str) -> bool:
        group, _, kind = _group_kind(obj)
        if self.kinds and not any(
            ("*" in groups or group in groups) and ("*" in kinds or kind in kinds)
            for groups, kinds in self.kinds
        ):
            return False
        if self.scope == "Cluster" and namespace:
            return False
        if self.scope == "Namespaced" and not namespace:
            return False
        if self.namespaces and not (namespace and any(_glob(p, namespace) for p in self.namespaces)):
            return False
        if namespace and any(_glob(p, namespace) for p in self.excluded_namespaces):
            return False
        name = _nested(obj, ("metadata", "name"))
        if self.name and not (isinstance(name, str) and _glob(self.name, name)):
            return False
        labels = _nested(obj, ("metadata", "labels"))
        return _selects(self.label_selector, labels if isinstance(labels, Mapping) else {})


@dataclass(frozen=True, slots=True)
class Constraint:
    """One constraint: its parameters, match and enforcement action(s)."""

    kind: str
    name: str
    parameters: Mapping[str, Any]
    enforcement_action: str = EnforcementAction.DENY.value
    # For enforcementAction "scoped": enforcement point -> actions.
    scoped_actions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    match: Match = field(default_factory=Match)

    @classmethod
    def from_mapping(cls, doc: Any, *, where: str = "constraint") -> Constraint:
        if not isinstance(doc, Mapping):
            raise InputError(f"{where}: not a Kubernetes object")
        kind, name = doc.get("kind"), _nested(doc, ("metadata", "name"))
        if not isinstance(kind, str) or not isinstance(name, str):
            raise InputError(f"{where}: kind and metadata.name are required")
        spec = doc.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise InputError(f"{where}: spec must be a mapping")
        params = spec.get("parameters")
        if params is None:
            params = {}  # Gatekeeper defaults parameters so Rego need not
        if not isinstance(params, Mapping):
            raise InputError(f"{where}: spec.parameters must be a mapping")
        action = str(spec.get("enforcementAction") or EnforcementAction.DENY.value)
        scoped: dict[str, list[str]] = {}
        for entry in spec.get("scopedEnforcementActions") or ():
            if not isinstance(entry, Mapping):
                continue
            for point in entry.get("enforcementPoints") or ():
                if isinstance(point, Mapping):
                    scoped.setdefault(str(point.get("name")), []).append(str(entry.get("action")))
        return cls(
            kind=kind,
            name=name,
            parameters=dict(params),
            enforcement_action=action,
            scoped_actions={k: tuple(v) for k, v in scoped.items()},
            match=Match.from_mapping(spec.get("match")),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Constraint:
        return cls.from_mapping(_single_document(path), where=str(path))

    def actions_for(self, *, audit: bool) -> tuple[str, ...]:
        """The actions that apply at the webhook, or in audit."""
        if self.enforcement_action != "scoped":
            return (self.enforcement_action,)
        point = AUDIT_POINT if audit else VALIDATION_POINT
        return self.scoped_actions.get(point, ()) + self.scoped_actions.get("*", ())


# -- reviews ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    groups: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "groups": list(self.groups)}


def _group_kind(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    api_version = obj.get("apiVersion")
    api_version = api_version if isinstance(api_version, str) else ""
    group, _, version = api_version.rpartition("/")
    kind = obj.get("kind")
    return group, version, kind if isinstance(kind, str) else ""


def object_namespace(obj: Mapping[str, Any], default: str = "") -> str:
    namespace = _nested(obj, ("metadata", "namespace"))
    return namespace if isinstance(namespace, str) and namespace else default


def admission_review(
    obj: Mapping[str, Any],
    *,
    operation: Operation = Operation.CREATE,
    user: UserInfo | None = None,
    old_object: Mapping[str, Any] | None = None,
    namespace: str = "",
    dry_run: bool = False,
) -> dict[str, Any]:
    """``input.review`` as the webhook builds it from an AdmissionRequest.

    For DELETE the API server sends the object as ``oldObject`` only and
    Gatekeeper copies it into ``object`` so policies can see what is deleted;
    for UPDATE both are sent.
    """
    group, version, kind = _group_kind(obj)
    name = _nested(obj, ("metadata", "name"))
    review: dict[str, Any] = {
        "uid": "00000000-0000-0000-0000-000000000000",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "name": name if isinstance(name, str) else "",
        "namespace": object_namespace(obj, namespace),
        "operation": operation.value,
        "userInfo": (
            user or UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
        ).to_json(),
        "dryRun": dry_run,
    }
    if operation is Operation.DELETE:
        review["object"] = dict(obj)
        review["oldObject"] = dict(obj)
    else:
        review["object"] = dict(obj)
        review["oldObject"] = dict(old_object) if old_object is not None else None
    return review


def audit_review(obj: Mapping[str, Any], *, namespace: str = "") -> dict[str, Any]:
    """``input.review`` as the audit controller builds it: no userInfo, no operation."""
    group, version, kind = _group_kind(obj)
    name = _nested(obj, ("metadata", "name"))
    return {
        "kind": {"group": group, "version": version, "kind": kind},
        "name": name if isinstance(name, str) else "",
        "namespace": object_namespace(obj, namespace),
        "object": dict(obj),
    }


# -- external data ---------------------------------------------------------------------


class Transport(Protocol):
    """Sends one ProviderRequest body; returns (HTTP status, body) or raises SourceError."""

    def post(self, body: bytes) -> tuple[int, bytes]: ...


@dataclass(frozen=True, slots=True)
class HttpsTransport:
    """POST over TLS 1.3 with a client certificate, as Gatekeeper's client does."""

    url: str
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_response_bytes: int = MAX_RESPONSE_BYTES

    def _context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"TLS files for {self.url}: {exc}") from exc
        return context

    def post(self, body: bytes) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise InputError(f"provider URL must be https://HOST[:PORT]/PATH, got {self.url!r}")
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, context=self._context(), timeout=self.timeout_seconds
        )
        try:
            connection.request(
                "POST", parts.path or "/", body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = response.read(self.max_response_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"failed to send external data request: {exc}") from exc
        finally:
            connection.close()
        if len(data) > self.max_response_bytes:
            raise SourceError(f"external data response is larger than {self.max_response_bytes} bytes")
        return response.status, data


@dataclass(frozen=True, slots=True)
class HandlerTransport:
    """The provider's own request handler, in-process: same wire code, no network."""

    handle: Callable[[bytes], bytes]

    def post(self, body: bytes) -> tuple[int, bytes]:
        return 200, self.handle(body)


class ExternalData:
    """Gatekeeper's ``external_data`` builtin over the given providers.

    ``providers`` maps Provider names to transports; ``default`` answers any
    other name (an offline run has one provider). ``calls`` records each
    request's provider and keys, so tests can count round trips.
    """

    def __init__(self, providers: Mapping[str, Transport] | None = None, *, default: Transport | None = None):
        self._providers = dict(providers or {})
        self._default = default
        self._lock = threading.Lock()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, Mapping):
            return _transport_failure(500, "external_data expects an object with provider and keys")
        provider = request.get("provider")
        keys = request.get("keys")
        if not isinstance(provider, str) or not isinstance(keys, list):
            return _transport_failure(500, "external_data expects {provider: string, keys: [...]}")
        if not all(isinstance(k, str) for k in keys):
            # Gatekeeper cannot decode the request: the call fails, as when the provider is down.
            return _transport_failure(500, "external_data keys must be strings")
        with self._lock:
            self.calls.append((provider, tuple(keys)))
        transport = self._providers.get(provider, self._default)
        if transport is None:
            return _transport_failure(500, f"provider {provider!r} is not found in provider cache")
        body = json.dumps(
            {"apiVersion": PROVIDER_API_VERSION, "kind": "ProviderRequest", "request": {"keys": keys}}
        ).encode()
        try:
            status, data = transport.post(body)
        except SourceError as exc:
            logger.info("external data request failed: %s", exc.diagnostics())
            return _transport_failure(500, exc.diagnostics())
        try:
            answer = json.loads(data)
        except ValueError as exc:
            return _transport_failure(500, f"failed to unmarshal external data response: {exc}")
        return rego_response(status, answer)


def _transport_failure(status: int, message: str) -> dict[str, Any]:
    # Gatekeeper's HandleError: no responses, no errors, the reason as system_error.
    return {"responses": None, "errors": None, "status_code": status, "system_error": message}


def rego_response(status: int, answer: Any) -> dict[str, Any]:
    """A ProviderResponse as Rego sees it: items split into responses and errors.

    Mirrors Gatekeeper's decoding into typed structs: fields of the wrong type
    read as absent, items with a non-empty ``error`` are errors.
    """
    response = answer.get("response") if isinstance(answer, Mapping) else None
    response = response if isinstance(response, Mapping) else {}
    responses: list[list[Any]] = []
    errors: list[list[Any]] = []
    items = response.get("items")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        error = item.get("error")
        if isinstance(error, str) and error:
            errors.append([item.get("key"), error])
        else:
            responses.append([item.get("key"), item.get("value")])
    system_error = response.get("systemError")
    return {
        "responses": responses,
        "errors": errors,
        "status_code": status,
        "system_error": system_error if isinstance(system_error, str) else "",
    }


# -- engines ----------------------------------------------------------------------------


class RegoEngine(Protocol):
    def violations(self, rego_input: Mapping[str, Any]) -> list[Any]: ...


class RegorusEngine:
    """regorus (Rego v0 and v1), with ``external_data`` as a Python extension."""

    def __init__(self, template: Template, external_data: ExternalData, *, rego_version: str | None = None):
        try:
            import regorus  # optional dependency, imported when used
        except ImportError as exc:
            raise InputError("the regorus package is required (pip install gordon-to-regorus)") from exc
        version = rego_version or template.rego_version
        self._engine = regorus.Engine()
        self._engine.set_rego_v0(version == "v0")
        self._engine.add_extension("external_data", 1, external_data)
        self._engine.add_data({"inventory": {}})
        try:
            self._engine.add_policy(f"{template.name}.rego", template.rego)
        except RuntimeError as exc:
            raise InputError(f"template {template.name}: {_first_line(exc)}") from exc
        self._query = f"data.{template.package}.violation"

    def violations(self, rego_input: Mapping[str, Any]) -> list[Any]:
        self._engine.set_input_json(json.dumps(rego_input))
        try:
            result = json.loads(self._engine.eval_rule_as_json(self._query))
        except RuntimeError as exc:
            raise EvaluationError(_first_line(exc)) from exc
        return list(result) if isinstance(result, list) else []


class OpaEngine:
    """OPA itself (Rego v1) through its Python bindings, ``external_data`` as a custom builtin."""

    def __init__(self, template: Template, external_data: ExternalData):
        try:
            from opa_bindings import OpaEngine as _Opa
        except ImportError as exc:
            raise InputError("the opa-golib-python-bindings package is required") from exc
        if template.rego_version != "v1":
            raise InputError(f"template {template.name}: the OPA engine here reads Rego v1 only")
        self._engine = _Opa()
        self._engine.register_function("external_data", external_data, arity=1)
        self._engine.add_data({"inventory": {}})
        self._engine.add_policy(f"{template.name}.rego", template.rego)
        self._query = f"violations := data.{template.package}.violation"

    def violations(self, rego_input: Mapping[str, Any]) -> list[Any]:
        try:
            rows = self._engine.eval_query(self._query, dict(rego_input))
        except Exception as exc:  # OpaError lives in an optional package
            raise EvaluationError(str(exc).splitlines()[0]) from exc
        if not rows:
            return []
        found = rows[0].get("violations")
        return list(found) if isinstance(found, list) else []


class EvaluationError(InputError):
    """The Rego could not be evaluated (Gatekeeper reports this as a violation)."""


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.lstrip().startswith(("-->", "|"))]
    errors = [ln.strip() for ln in lines if ln.strip().startswith("error:")]
    return (errors or lines or [exc.__class__.__name__])[0]


# -- evaluation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """One violation as the cluster would report it."""

    constraint_kind: str
    constraint_name: str
    enforcement_action: str
    msg: str
    details: Any = None
    object_kind: str = ""
    object_namespace: str = ""
    object_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "object": {
                "kind": self.object_kind,
                "namespace": self.object_namespace,
                "name": self.object_name,
            },
            "constraint": {"kind": self.constraint_kind, "name": self.constraint_name},
            "enforcementAction": self.enforcement_action,
            "msg": self.msg,
            "details": self.details,
        }


class PolicyEvaluator:
    """Runs one template against its constraints, one review at a time."""

    def __init__(
        self,
        template: Template,
        external_data: ExternalData,
        *,
        engine: EngineKind = EngineKind.REGORUS,
        rego_version: str | None = None,
    ):
        self.template = template
        self.external_data = external_data
        if engine is EngineKind.OPA:
            self._engine: RegoEngine = OpaEngine(template, external_data)
        else:
            self._engine = RegorusEngine(template, external_data, rego_version=rego_version)

    def evaluate(
        self, review: Mapping[str, Any], constraints: Sequence[Constraint], *, audit: bool = False
    ) -> list[Violation]:
        obj = review.get("object") or review.get("oldObject") or {}
        obj = obj if isinstance(obj, Mapping) else {}
        namespace = str(review.get("namespace") or "")
        out: list[Violation] = []
        for constraint in constraints:
            if constraint.kind != self.template.kind:
                continue
            if not constraint.match.matches(obj, namespace):
                continue
            actions = constraint.actions_for(audit=audit)
            if not actions:
                continue
            rego_input = {"review": dict(review), "parameters": dict(constraint.parameters)}
            try:
                found = self._engine.violations(rego_input)
            except EvaluationError as exc:
                # Gatekeeper turns an evaluation error into a violation per constraint.
                found = [{"msg": exc.diagnostics(), "details": {}}]
            for result in sorted(found, key=lambda r: str(r.get("msg")) if isinstance(r, Mapping) else ""):
                if not isinstance(result, Mapping):
                    continue
                for action in actions:
                    out.append(
                        Violation(
                            constraint_kind=constraint.kind,
                            constraint_name=constraint.name,
                            enforcement_action=action,
                            msg=str(result.get("msg", "")),
                            details=result.get("details"),
                            object_kind=_group_kind(obj)[2],
                            object_namespace=namespace,
                            object_name=str(review.get("name") or ""),
                        )
                    )
        return out


# -- helpers --------------------------------------------------------------------------


def _nested(doc: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a mapping")
    return value


def _single_document(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML") from exc
    if len(docs) != 1:
        raise InputError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def _glob(pattern: str, value: str) -> bool:
    # Gatekeeper's namespace and name matchers accept a trailing or leading '*'.
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def _selects(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping) and any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in selector.get("matchExpressions") or ():
        if not isinstance(expr, Mapping):
            continue
        key, op, values = str(expr.get("key")), expr.get("operator"), list(expr.get("values") or ())
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
