"""Sources: fetch bundles, keys and configuration from registries, clusters and files.

Every source translates its failures into :class:`provider.errors.SourceError`
(transient, "could not check") or :class:`provider.errors.ReferenceNotAllowedError`
(deterministic, a verdict).
"""
