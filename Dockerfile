# product-sync service image.
#
#   podman build -t product-sync .                 (or: docker build -t product-sync .)
#   podman run -p 127.0.0.1:9000:9000 -v product-sync-data:/data -e SYNC_ADMIN_TOKEN=... product-sync
#
# BASE_IMAGE must provide python3 (3.11+) with the venv module: the official python:3.11-slim, or a
# Debian bookworm image with python3 + python3-venv (scripts/container-smoke.sh builds one with debootstrap).
# Nothing below depends on where the base keeps its interpreter.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Only needed where PyPI is reached through a proxy with its own CA: pass a CA bundle path that is
# mounted into the build (e.g. --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt -v /etc/ssl/certs:/etc/ssl/certs:ro).
# An empty value leaves pip on its own bundle.
ARG PIP_CERT=""
ARG APP_UID=10001

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

SHELL ["/bin/sh", "-eu", "-c"]

# Dependencies first, from pyproject.toml alone, so source edits do not reinstall them.
COPY pyproject.toml /app/pyproject.toml
RUN python3 -m venv /opt/venv \
    && python3 -c "import tomllib; deps = tomllib.load(open('/app/pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep='\n')" > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# service/ and migrations/ stay siblings under /app, which is where Settings looks for migrations by default.
COPY migrations/ /app/migrations/
COPY service/ /app/service/
RUN python -m compileall -q /app/service \
    && groupadd --gid "${APP_UID}" app \
    && useradd --no-log-init --uid "${APP_UID}" --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data

ENV SYNC_HOST=0.0.0.0 \
    SYNC_PORT=9000 \
    SYNC_DB_PATH=/data/product-sync.db \
    SYNC_MIGRATIONS_DIR=/app/migrations

WORKDIR /app
VOLUME ["/data"]
EXPOSE 9000
USER ${APP_UID}:${APP_UID}

# Follows SYNC_PORT so the check still works when the port is overridden (e.g. with host networking).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SYNC_PORT', '9000'), timeout=4)"]

# The service is PID 1 and handles SIGTERM itself: it stops taking requests, ends a running sync and closes the ledger.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service", "serve"]
