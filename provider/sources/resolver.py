"""Route a ``resourceBundleRef`` to the source that can fetch it.

``k8s://ConfigMap/NAMESPACE/NAME`` references go to the cluster source, every
other reference is an OCI image reference. A kind of reference whose source
is not configured is refused as a verdict (``REFERENCE_NOT_ALLOWED``), never
silently skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provider.core.bundle import BundleResolver, SignedBundle
from provider.errors import ReferenceNotAllowedError

if TYPE_CHECKING:
    from provider.config import Settings
    from provider.sources.cluster import ClusterClient

CLUSTER_SCHEME = "k8s://"


class DispatchingResolver:
    """A :class:`BundleResolver` over the OCI and ConfigMap sources."""

    def __init__(self, *, oci: BundleResolver | None = None, configmap: BundleResolver | None = None) -> None:
        self._oci = oci
        self._configmap = configmap

    def resolve(self, reference: str) -> SignedBundle:
        reference = reference.strip()
        if reference.startswith(CLUSTER_SCHEME):
            if self._configmap is None:
                raise ReferenceNotAllowedError(
                    f"bundle reference {reference[:200]!r}: ConfigMap-held bundles are not enabled"
                )
            return self._configmap.resolve(reference)
        if self._oci is None:
            raise ReferenceNotAllowedError(
                f"bundle reference {reference[:200]!r}: no registry is allowed (configure registries.allow)"
            )
        return self._oci.resolve(reference)


def resolver_from_settings(
    settings: Settings, *, cluster: ClusterClient | None = None
) -> DispatchingResolver:
    """The resolver a configuration describes: allowed registries and ConfigMap namespaces.

    A kind of reference whose section is absent stays disabled, so it is refused
    as a verdict. ``cluster`` reuses an existing API client (the audit command's);
    by default one is built from the ``cluster:`` section when ConfigMaps are enabled.
    """
    # Imported here: the cluster source pulls in the Kubernetes client, which
    # only configurations with ConfigMap bundles need.
    from provider.sources.cluster import ConfigMapBundleResolver
    from provider.sources.oci import OciBundleResolver

    oci = None
    if settings.registries is not None:
        oci = OciBundleResolver(settings.registries, limits=settings.limits)
    configmap = None
    section = settings.cluster
    if section is not None and section.configmap_namespaces:
        if cluster is None:
            configmap = ConfigMapBundleResolver.from_settings(
                section, limits=settings.limits, domain=settings.annotation_domain
            )
        else:
            configmap = ConfigMapBundleResolver(
                cluster,
                allowed_namespaces=section.configmap_namespaces,
                limits=settings.limits,
                domain=settings.annotation_domain,
                cache_ttl_seconds=section.cache_ttl_seconds,
                cache_max_entries=section.cache_max_entries,
            )
    return DispatchingResolver(oci=oci, configmap=configmap)
