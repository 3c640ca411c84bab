# syntax=docker/dockerfile:1
# sms-gateway image: one image, three commands (`gateway`, the default; `worker`; `sandbox`).
#
#   docker build -t sms-gateway .
#   docker run --rm -p 8080:8080 -e SMSGW_REDIS_URL=... sms-gateway            # gateway
#   docker run --rm -e SMSGW_REDIS_URL=... -e SMSGW_UBILL_API_KEY=... sms-gateway worker
#
# Two stages: `build` creates a virtualenv in /opt/venv (dependencies first, in their own cached layer, then
# the package); the final stage copies only that virtualenv onto a clean slim Python, so no pip cache, build
# backend or compiler reaches the running image.

# checkov cannot see a tag through an ARG (CKV_DOCKER_7); the default below is a versioned tag, and a build can
# pin a digest instead: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
# checkov:skip=CKV_DOCKER_7:the base image is the ARG PYTHON_IMAGE, a versioned tag by default
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The virtualenv gets no pip of its own: the image's pip installs into it (--python), so the final stage
# carries no installer inside the application's environment.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src

# Dependencies only, read from pyproject.toml: this layer is rebuilt when the dependencies change, not on
# every source change. Every dependency ships wheels for linux/amd64 and arm64, so nothing is compiled.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip --python /opt/venv/bin/python install --requirement /tmp/requirements.txt

# Then the package itself, without touching the dependencies installed above.
COPY README.md ./
COPY smsgw ./smsgw
RUN pip --python /opt/venv/bin/python install --no-deps . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/smsgw --help > /dev/null


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sms-gateway" \
      org.opencontainers.image.description="Internal SMS gateway: HTTP edge, Redis queue and workers in front of uBill" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and runAsUser: 10001 matches the files.
RUN groupadd --system --gid 10001 smsgw \
    && useradd --system --uid 10001 --gid smsgw --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smsgw

COPY --from=build /opt/venv /opt/venv

# Bytecode was compiled at build time: the root filesystem is read-only at run time.
# Logs are JSON lines on stdout, unbuffered, for the cluster's log collector.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SMSGW_LOG_FORMAT=json

WORKDIR /tmp
USER 10001:10001

# Gateway HTTP (SMSGW_HTTP_PORT) and the worker's health/metrics port (SMSGW_WORKER_HTTP_PORT).
EXPOSE 8080 9091

# For Docker and Compose (Kubernetes ignores it and uses the chart's probes). No curl in a slim image: Python
# asks /healthz on the port of the command PID 1 runs (worker, sandbox, else the gateway); any error exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["python", "-c", "import os, urllib.request; cmd = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); port = os.environ.get('SMSGW_WORKER_HTTP_PORT', '9091') if b'worker' in cmd else os.environ.get('SMSGW_SANDBOX_PORT', '8081') if b'sandbox' in cmd else os.environ.get('SMSGW_HTTP_PORT', '8080'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Exec form: smsgw is PID 1 and receives SIGTERM itself (no shell in between to swallow it). The gateway stops
# accepting and finishes its requests; the worker stops taking jobs and drains the uBill calls in flight for up
# to SMSGW_SHUTDOWN_GRACE. Give it longer than that before SIGKILL (docker stop -t, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["smsgw"]
CMD ["gateway"]
