"""Resource limits applied to every untrusted input.

Each limit has its unit in its name. They are part of the configuration
(``limits:`` in the YAML file) and are validated at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep hostile input from costing unbounded time or memory."""

    # A single annotation value (base64 text). Kubernetes caps all annotations
    # of an object at 256 KiB together; an OCI layer can be larger.
    max_annotation_bytes: int = 1 * MiB
    # The signed message after base64 and gzip decoding (and the inner tarball
    # after its own gunzip), and any OCI bundle layer.
    max_message_bytes: int = 8 * MiB
    # Members of a legacy tarball message.
    max_tar_members: int = 64
    # YAML documents in one signed message.
    max_documents: int = 1000
    # Nodes of a parsed YAML/JSON value *after* alias expansion (alias bombs).
    max_yaml_nodes: int = 200_000
    # Nesting depth of any parsed value.
    max_depth: int = 64
    # Signature sets (signature, signature_1, ...) considered per object.
    max_signature_sets: int = 16
    # Diff entries reported in a verdict, and characters per reported value.
    max_diff_entries: int = 20
    max_diff_value_chars: int = 120

    def problems(self) -> list[str]:
        """Every invalid field, for configuration validation."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                out.append(f"limits.{f.name} must be a positive integer, got {value!r}")
        return out


DEFAULT_LIMITS = Limits()
