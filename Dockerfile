# Encore: slim Python image, locked dependencies installed before the source, a numeric non-root user,
# the data directory as a volume, the webhook port exposed, a health check on /healthz. /files is where replicas
# sharing PostgreSQL mount their shared audio volume (docker-compose.postgres.example.yml), owned by the user.
# Runs with a read-only root filesystem (only /data and a /tmp tmpfs are written): see docker-compose.example.yml.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install -r /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY bot /src/bot
COPY cogs /src/cogs
RUN /opt/venv/bin/pip install --no-deps /src

FROM python:3.11-slim
RUN groupadd --gid 10001 encore \
 && useradd --create-home --uid 10001 --gid 10001 encore \
 && mkdir -p /data /files && chown 10001:10001 /data /files
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENCORE_STORAGE__DIR=/data \
    ENCORE_WEBHOOKS__HOST=0.0.0.0 \
    ENCORE_WEBHOOKS__PORT=8080
WORKDIR /home/encore
# Numeric, so a runtime can tell it isn't root without reading /etc/passwd (Kubernetes runAsNonRoot).
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# Healthy while /healthz answers 200 (the database works and the Discord gateway is connected). Python, as
# the image has no curl; it follows ENCORE_WEBHOOKS__PORT if you change the port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ENCORE_WEBHOOKS__PORT', '8080'), timeout=4)"]
# docker stop sends SIGTERM: Encore stops cleanly (exit 0) within docker's 10 s; unfinished jobs resume at the next start.
STOPSIGNAL SIGTERM
# Mount a config file at /home/encore/config.toml (optional); secrets come from the environment.
# Exec form: Python is PID 1 and gets the signals itself.
CMD ["python", "-m", "bot", "run"]
