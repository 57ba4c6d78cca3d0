"""The pure verification core.

Nothing in this package imports Flask, gunicorn or the Kubernetes client, and
nothing here performs network I/O: bytes come in, verdicts go out. Fetching
bundles and keys is the job of :mod:`provider.sources`.
"""
