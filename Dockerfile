# manifest-provider: the Gatekeeper external data provider, as a small non-root image.
#
#   docker build -t manifest-provider:0.1.0 .
#
# Two stages: the build stage creates a virtual environment with the pinned
# dependencies and the project's wheel; the final stage copies only that
# environment onto the same slim base (same Python, same path), so no compiler,
# pip cache or source tree ships.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/manifest-provider
# Dependencies first: this layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN /opt/manifest-provider/bin/pip install --only-binary=:all: -r requirements.txt
COPY pyproject.toml README.md ./
COPY provider ./provider
RUN /opt/manifest-provider/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/manifest-provider/bin/pip install --no-deps /wheels/manifest_provider-*.whl \
 && /opt/manifest-provider/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# A fixed numeric UID/GID so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 provider \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin provider
COPY --from=build /opt/manifest-provider /opt/manifest-provider
# Two malloc arenas instead of one per thread: a worker with a full verdict cache
# measured 163 MB resident with the default and 139 MB with this.
ENV PATH=/opt/manifest-provider/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
USER 10001:10001
EXPOSE 8443
# `serve` runs gunicorn's arbiter as PID 1 (exec form, no shell): SIGTERM stops accepting,
# lets in-flight requests finish within the graceful timeout, then exits. Workers,
# threads and timeouts come from the server: section of the configuration file.
STOPSIGNAL SIGTERM
ENTRYPOINT ["manifest-provider"]
CMD ["serve", "--config", "/etc/manifest-provider/config/config.yaml"]
