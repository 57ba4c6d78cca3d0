"""manifest-provider: verify sigstore-signed Kubernetes manifests for OPA Gatekeeper."""

__version__ = "0.1.0"
