# syntax=docker/dockerfile:1
# The alertgateway container image.
#
# Build (from the repository root, where a Docker engine exists):
#
#   docker build -t alertgateway:0.1.0 .
#   docker run --rm -p 8080:8080 -p 9090:9090 -e WEBHOOK_TOKEN=s3cret alertgateway:0.1.0
#
# It runs as an unprivileged user (uid 10001) and works with a read-only
# root filesystem: the only place it writes is /var/lib/alertgateway (the
# SQLite queue, and the alerts file of the default configuration), which
# Kubernetes mounts as a volume (deploy/base/deployment.yaml).
# The configuration is /etc/alertgateway/gateway.yaml: the image carries
# deploy/docker/gateway.yaml there; Kubernetes mounts a ConfigMap over it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` needs (see .dockerignore).
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY alertgateway ./alertgateway
COPY twisted ./twisted

# Install as root, then write Twisted's plugin cache (dropin.cache) now:
# at run time the root filesystem is read-only and the user cannot write
# site-packages, so twistd would otherwise rescan the plugins at every start
# and fail to save the cache.
RUN pip install . \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && twistd --help | grep -q alertgateway \
 && rm -rf /src

RUN groupadd --system --gid 10001 alertgateway \
 && useradd --system --uid 10001 --gid alertgateway --no-create-home \
        --home-dir /var/lib/alertgateway --shell /usr/sbin/nologin alertgateway \
 && install -d -o alertgateway -g alertgateway -m 0750 /var/lib/alertgateway \
 && install -d -m 0755 /etc/alertgateway

COPY deploy/docker/gateway.yaml /etc/alertgateway/gateway.yaml

# Relative paths in the configuration (var/…) land in the writable volume.
WORKDIR /var/lib/alertgateway
VOLUME ["/var/lib/alertgateway"]
USER 10001:10001

# 8080: webhooks and /health/*; 9090: /metrics.
EXPOSE 8080 9090

# No curl in the slim image: ask /health/live with the standard library
# (urlopen raises, so the exit status is 1, on anything but a 2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4)"]

# --pidfile= : no pid file (there is nowhere writable for it, and a stale one
# would stop the next start).  SIGTERM drains within service.shutdown_grace.
STOPSIGNAL SIGTERM
CMD ["twistd", "-n", "--pidfile=", "alertgateway", "--config", "/etc/alertgateway/gateway.yaml"]
