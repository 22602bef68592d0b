# ottla broker image. Installs ottla from wheels built on the host, so the build needs
# no network:
#   python3 -m pip wheel . -w build/wheels     # ottla + its runtime dependencies
#   docker build -t localhost/ottla:dev .     # or: podman build --format docker ...
# BASE_IMAGE must carry python3 (3.11, matching the wheels) with venv; a locally made
# image replaces the public one with --build-arg BASE_IMAGE=localhost/debian-local:bookworm.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/ottla/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

COPY build/wheels/ /tmp/wheels/
# hadolint ignore=DL3013
RUN python3 -m venv /opt/ottla \
    && /opt/ottla/bin/python -m pip install --no-cache-dir --no-index \
        --find-links /tmp/wheels ottla \
    && rm -rf /tmp/wheels \
    && (getent group ottla >/dev/null || groupadd --gid 10001 ottla) \
    && useradd --uid 10001 --gid ottla --home-dir /var/lib/ottla \
        --no-create-home --shell /usr/sbin/nologin ottla \
    && mkdir -p /var/lib/ottla \
    && chown ottla:ottla /var/lib/ottla

# One listener for clients and the metadata quorum alike. Each node of a cluster sets
# OTTLA_NODE_ID, OTTLA_CLUSTER_ID, OTTLA_CONTROLLER_QUORUM_VOTERS and
# OTTLA_ADVERTISED_LISTENERS (an address its clients can reach): see compose.yaml.
ENV OTTLA_LISTENERS=PLAINTEXT://0.0.0.0:9092 \
    OTTLA_LOG_DIRS=/var/lib/ottla

USER 10001:10001
WORKDIR /var/lib/ottla
VOLUME ["/var/lib/ottla"]
EXPOSE 9092

# Healthy once the node answers a Metadata request on its own listener.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "ottla", "topics", "list", "--bootstrap-server", "127.0.0.1:9092"]

# ottla stops cleanly on SIGTERM (in-flight requests finish, logs are flushed).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "ottla", "serve"]
