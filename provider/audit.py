"""On-demand check of the objects already in a cluster.

Selects objects either by kind, namespace and label selector, or by the
``match`` section of every ``K8sSignedManifests`` constraint in the cluster,
lists them page by page and verifies each with the same core and
configuration the provider uses, a bounded number at a time. A constraint's
``parameters.ignoreFields`` apply to the objects it selects, as in admission.

What a constraint's ``match`` means here follows Gatekeeper: ``kinds``
(``apiGroups``/``kinds``, ``*`` for any), ``namespaces`` and
``excludedNamespaces`` (exact names, or prefixes ending in ``*``),
``labelSelector`` and ``namespaceSelector`` (``matchLabels`` and
``matchExpressions``), ``scope``. Cluster-scoped objects are selected only
when no namespace condition is given. Gatekeeper's own exempt namespaces
(its ``Config`` and flags) are not read.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from provider.core.ignore import IgnoreRule, parse_ignore_fields
from provider.core.verdict import ObjectRef, Verdict
from provider.errors import ConfigError, InputError, ManifestProviderError, SourceError
from provider.sources.cluster import ClusterClient, Discovery, ResourceType, list_objects, namespace_labels

log = logging.getLogger(__name__)

CONSTRAINT_KIND = "K8sSignedManifests"
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"


class ObjectVerifier(Protocol):
    """What audit needs of :class:`provider.core.verifier.Verifier`."""

    def verify(
        self, obj: Mapping[str, Any], *, extra_rules: Sequence[IgnoreRule] = (), namespace: str | None = None
    ) -> Verdict: ...


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"  # checked, not verified: the verdict says why
    ERROR = "error"  # could not be checked (bundle fetch failed, unreadable object)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One object's result; ``constraint`` names the constraint that selected it, if any."""

    object: ObjectRef
    outcome: Outcome
    verdict: Verdict | None = None
    error: str | None = None
    constraint: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object.to_json(), "outcome": self.outcome.value}
        if self.constraint is not None:
            out["constraint"] = self.constraint
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_json()
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: tuple[AuditEntry, ...]

    @property
    def ok(self) -> bool:
        return all(e.outcome is Outcome.VERIFIED for e in self.entries)

    def summary(self) -> dict[str, Any]:
        by_reason = Counter(
            e.verdict.reason.value
            for e in self.entries
            if e.outcome is Outcome.FAILED and e.verdict is not None
        )
        return {
            "total": len(self.entries),
            "verified": sum(1 for e in self.entries if e.outcome is Outcome.VERIFIED),
            "failed": sum(1 for e in self.entries if e.outcome is Outcome.FAILED),
            "errors": sum(1 for e in self.entries if e.outcome is Outcome.ERROR),
            "failedByReason": dict(sorted(by_reason.items())),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "results": [e.to_json() for e in self.entries]}


# -- selection ---------------------------------------------------------------------


def _name_matches(patterns: Iterable[str], name: str) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (``matchLabels`` + ``matchExpressions``) against labels."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _selector_problems(selector: Any, where: str) -> list[str]:
    if selector is None:
        return []
    if not isinstance(selector, Mapping):
        return [f"{where} must be a mapping"]
    problems: list[str] = []
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        problems.append(f"{where}.matchLabels must map names to strings")
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        return [*problems, f"{where}.matchExpressions must be a list"]
    for i, expr in enumerate(exprs):
        if not isinstance(expr, Mapping) or expr.get("operator") not in (
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
        ):
            problems.append(
                f"{where}.matchExpressions[{i}]: expected key, operator In/NotIn/Exists/DoesNotExist"
            )
    return problems


@dataclass(frozen=True, slots=True)
class Selection:
    """Which objects to audit, and with which extra ignore rules.

    ``kinds`` holds ``(apiGroups, kinds)`` pairs as in a constraint; names
    given on the command line are resolved to types first (``types``).
    """

    name: str | None = None
    kinds: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    types: tuple[ResourceType, ...] = ()
    namespaces: tuple[str, ...] = ()
    excluded_namespaces: tuple[str, ...] = ()
    label_selector: Mapping[str, Any] | None = None
    label_selector_text: str | None = None  # passed to the server as is
    namespace_selector: Mapping[str, Any] | None = None
    scope: str = "*"
    extra_rules: tuple[IgnoreRule, ...] = ()

    @classmethod
    def from_constraint(cls, constraint: Mapping[str, Any]) -> Selection:
        """A K8sSignedManifests constraint's ``spec.match`` and ``parameters.ignoreFields``."""
        name = str((constraint.get("metadata") or {}).get("name", "?"))
        where = f"constraint {name}"
        spec = constraint.get("spec") or {}
        match = spec.get("match") or {}
        problems: list[str] = []
        if not isinstance(match, Mapping):
            raise ConfigError([f"{where}: spec.match must be a mapping"])
        kinds: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for i, entry in enumerate(match.get("kinds") or [{"apiGroups": ["*"], "kinds": ["*"]}]):
            groups = entry.get("apiGroups") if isinstance(entry, Mapping) else None
            names = entry.get("kinds") if isinstance(entry, Mapping) else None
            if not isinstance(groups, list) or not isinstance(names, list):
                problems.append(f"{where}: spec.match.kinds[{i}] needs apiGroups and kinds lists")
                continue
            kinds.append((tuple(map(str, groups)), tuple(map(str, names))))
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("namespaces", "excludedNamespaces"):
            value = match.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{where}: spec.match.{key} must be a list of names")
                value = []
            lists[key] = tuple(value)
        problems += _selector_problems(match.get("labelSelector"), f"{where}: spec.match.labelSelector")
        problems += _selector_problems(
            match.get("namespaceSelector"), f"{where}: spec.match.namespaceSelector"
        )
        scope = match.get("scope", "*")
        if scope not in ("*", "Namespaced", "Cluster"):
            problems.append(f"{where}: spec.match.scope must be *, Namespaced or Cluster")
        rules: tuple[IgnoreRule, ...] = ()
        params = spec.get("parameters") or {}
        if isinstance(params, Mapping) and params.get("ignoreFields") is not None:
            try:
                rules = parse_ignore_fields(params["ignoreFields"], where=f"{where}: parameters.ignoreFields")
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return cls(
            name=name,
            kinds=tuple(kinds),
            namespaces=lists["namespaces"],
            excluded_namespaces=lists["excludedNamespaces"],
            label_selector=match.get("labelSelector"),
            namespace_selector=match.get("namespaceSelector"),
            scope=str(scope),
            extra_rules=rules,
        )

    def admits(self, obj: Mapping[str, Any], ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        if namespace:
            if self.scope == "Cluster":
                return False
            if self.namespaces and not _name_matches(self.namespaces, namespace):
                return False
            if _name_matches(self.excluded_namespaces, namespace):
                return False
            if self.namespace_selector and not selector_matches(
                self.namespace_selector, ns_labels.get(namespace, {})
            ):
                return False
        else:
            if self.scope == "Namespaced":
                return False
            if self.namespaces or self.namespace_selector:
                return False
        return selector_matches(self.label_selector, meta.get("labels") or {})


# -- running -----------------------------------------------------------------------


class Auditor:
    """Lists the selected objects and verifies them with bounded concurrency."""

    def __init__(
        self,
        cluster: ClusterClient,
        verifier: ObjectVerifier,
        *,
        concurrency: int = 8,
        page_size: int = 250,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        if concurrency < 1 or page_size < 1:
            raise ConfigError(["audit concurrency and page size must be >= 1"])
        self.cluster = cluster
        self.verifier = verifier
        self.concurrency = concurrency
        self.page_size = page_size
        self.progress = progress
        self.discovery = Discovery(cluster)
        self._ns_labels: dict[str, dict[str, str]] | None = None

    # selection -> objects

    def resolve_kinds(self, names: Sequence[str]) -> tuple[ResourceType, ...]:
        found: list[ResourceType] = []
        unknown = []
        for name in names:
            hits = self.discovery.find(name)
            if not hits:
                unknown.append(name)
            found += [h for h in hits if h not in found]
        if unknown:
            raise ConfigError(
                [f"kind {n!r} is not served by this cluster (or cannot be listed)" for n in unknown]
            )
        return tuple(found)

    def constraints(self) -> list[Selection]:
        """Every K8sSignedManifests constraint in the cluster, as selections."""
        types = self.discovery.find(f"{CONSTRAINT_KIND}.{CONSTRAINT_GROUP}")
        if not types:
            raise SourceError(
                f"the cluster serves no {CONSTRAINT_KIND} constraints: is the k8ssignedmanifests "
                "ConstraintTemplate installed?"
            )
        selections: list[Selection] = []
        problems: list[str] = []
        for constraint in list_objects(self.cluster, types[0], page_size=self.page_size):
            try:
                selections.append(Selection.from_constraint(constraint))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return selections

    def objects(self, selection: Selection) -> Iterator[dict[str, Any]]:
        types = list(selection.types)
        for groups, kinds in selection.kinds:
            types += [t for t in self.discovery.matching(groups, kinds) if t not in types]
        needs_ns_labels = selection.namespace_selector is not None
        if needs_ns_labels and self._ns_labels is None:
            self._ns_labels = namespace_labels(self.cluster)
        ns_labels = self._ns_labels or {}
        server_selector = selection.label_selector_text
        exact_namespaces = [n for n in selection.namespaces if not n.endswith("*")]
        for rtype in types:
            if rtype.kind == CONSTRAINT_KIND and rtype.group == CONSTRAINT_GROUP:
                continue
            if rtype.namespaced and exact_namespaces and len(exact_namespaces) == len(selection.namespaces):
                # Only the named namespaces: list each one instead of the whole cluster.
                listings: list[str | None] = list(exact_namespaces)
            else:
                listings = [None]
            for namespace in listings:
                for obj in list_objects(
                    self.cluster,
                    rtype,
                    namespace=namespace,
                    label_selector=server_selector,
                    page_size=self.page_size,
                ):
                    if selection.admits(obj, ns_labels):
                        yield obj

    # objects -> report

    def run(self, selections: Sequence[Selection]) -> AuditReport:
        entries: list[AuditEntry] = []
        lock = threading.Lock()
        done = 0
        listed = 0

        def check(obj: dict[str, Any], selection: Selection) -> AuditEntry:
            return self._check(obj, selection)

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="audit") as pool:
            pending: set[Future[AuditEntry]] = set()

            def collect(futures: Iterable[Future[AuditEntry]]) -> None:
                nonlocal done
                for fut in futures:
                    with lock:
                        entries.append(fut.result())
                        done += 1
                    if self.progress:
                        self.progress(done, None)

            for selection in selections:
                for obj in self.objects(selection):
                    listed += 1
                    pending.add(pool.submit(check, obj, selection))
                    # Bound the objects held in memory and in flight.
                    if len(pending) >= self.concurrency * 4:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        collect(finished)
            finished, _ = wait(pending)
            collect(finished)
        if self.progress:
            self.progress(done, listed)
        entries.sort(
            key=lambda e: (e.constraint or "", str(e.object.kind), e.object.namespace, e.object.name)
        )
        return AuditReport(tuple(entries))

    def _check(self, obj: Mapping[str, Any], selection: Selection) -> AuditEntry:
        ref = _ref(obj)
        try:
            verdict = self.verifier.verify(obj, extra_rules=selection.extra_rules)
        except (SourceError, InputError) as exc:
            return AuditEntry(ref, Outcome.ERROR, error=exc.diagnostics(), constraint=selection.name)
        except ManifestProviderError as exc:  # anything else that could not be checked
            return AuditEntry(ref, Outcome.ERROR, error=exc.diagnostics(), constraint=selection.name)
        outcome = Outcome.VERIFIED if verdict.verified else Outcome.FAILED
        return AuditEntry(verdict.object or ref, outcome, verdict=verdict, constraint=selection.name)


def _ref(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or ""),
    )
