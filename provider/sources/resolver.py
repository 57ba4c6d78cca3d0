"""Route a ``resourceBundleRef`` to the source that can fetch it.

``k8s://ConfigMap/NAMESPACE/NAME`` references go to the cluster source, every
other reference is an OCI image reference. A kind of reference whose source
is not configured is refused as a verdict (``REFERENCE_NOT_ALLOWED``), never
silently skipped.
"""

from __future__ import annotations

from provider.core.bundle import BundleResolver, SignedBundle
from provider.errors import ReferenceNotAllowedError

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
