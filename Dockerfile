# Encore: slim Python image, locked dependencies installed before the source, non-root user,
# the data directory as a volume, the webhook port exposed.
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
RUN useradd --create-home --uid 10001 encore \
 && mkdir -p /data && chown encore:encore /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ENCORE_STORAGE__DIR=/data \
    ENCORE_WEBHOOKS__HOST=0.0.0.0 \
    ENCORE_WEBHOOKS__PORT=8080
WORKDIR /home/encore
USER encore
VOLUME ["/data"]
EXPOSE 8080
# Mount a config file at /home/encore/config.toml (optional); secrets come from the environment.
CMD ["python", "-m", "bot", "run"]
