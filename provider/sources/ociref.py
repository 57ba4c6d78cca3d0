"""Strict parsing of OCI image references (``REGISTRY/REPO[:TAG][@sha256:HEX]``).

The grammar is the Docker distribution reference grammar, narrowed on
purpose: the registry must be written out (no implicit Docker Hub), the only
digest algorithm is sha256, and anything the grammar does not produce
(whitespace, upper-case repository names, empty components, IPv6 literals,
user-info, schemes) is refused with :class:`FormatError`. A reference comes
from an annotation of the object under review, so a bad one is a property of
that object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provider.errors import FormatError

DEFAULT_TAG = "latest"
MAX_REFERENCE_CHARS = 512
MAX_NAME_CHARS = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]{{1,5}})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Docker Hub's name in references and the host that serves its API.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. ``registry`` is lower-case ``host[:port]``."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        return self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry

    @property
    def port(self) -> int | None:
        return int(self.registry.rsplit(":", 1)[1]) if ":" in self.registry else None

    @property
    def api_registry(self) -> str:
        """Where the distribution API is served (Docker Hub's name differs from its API host)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository``: the identity cosign signs (``docker-reference``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def object_id(self) -> str:
        """The tag or digest to ask the registry for (the digest wins when both are given)."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str) -> Reference:
    """Parse one reference; the default tag is ``latest`` when neither tag nor digest is given."""
    if not isinstance(text, str):
        raise FormatError(f"image reference must be a string, got {type(text).__name__}")
    if not text or len(text) > MAX_REFERENCE_CHARS:
        raise FormatError(f"image reference must be 1..{MAX_REFERENCE_CHARS} characters, got {len(text)}")
    shown = text[:80]
    if not text.isascii() or any(c.isspace() or not c.isprintable() for c in text):
        raise FormatError(f"image reference {shown!r} contains whitespace or non-ASCII characters")
    if "://" in text:
        raise FormatError(f"image reference {shown!r} must not carry a scheme")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise FormatError(f"image reference {shown!r}: digest must be sha256:<64 lower-case hex>")
    registry, slash, path = rest.partition("/")
    if not slash or not path:
        raise FormatError(f"image reference {shown!r} must be REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")
    if not ("." in registry or ":" in registry or registry == "localhost"):
        raise FormatError(
            f"image reference {shown!r} must name its registry host (e.g. registry.example.com/...)"
        )
    if not _DOMAIN.fullmatch(registry):
        raise FormatError(f"image reference {shown!r}: registry {registry[:80]!r} is not a host[:port]")
    if ":" in registry:
        port = int(registry.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise FormatError(f"image reference {shown!r}: port {port} is out of range")
    tag: str | None = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise FormatError(f"image reference {shown!r}: tag {tag[:80]!r} is not a valid tag")
    components = path.split("/")
    for comp in components:
        if not _PATH_COMPONENT.fullmatch(comp):
            raise FormatError(
                f"image reference {shown!r}: repository component {comp[:80]!r} is not "
                "lower-case alphanumerics with single separators"
            )
    registry = registry.lower()
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"  # Docker Hub's official images live under library/
    if len(registry) + 1 + len(path) > MAX_NAME_CHARS:
        raise FormatError(f"image reference {shown!r}: name longer than {MAX_NAME_CHARS} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
