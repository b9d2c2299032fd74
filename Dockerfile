# One image for the gateway and the producers (docker-compose.yml runs both from it).
#   docker build -t redis-sse-gateway .
#   docker run -e REDIS_URL=redis://redis:6379/0 -p 8000:8000 redis-sse-gateway
#   docker run -e REDIS_URL=redis://redis:6379/0 redis-sse-gateway python -m producers echo --message hi

# The build stage installs the project into a virtualenv; only that virtualenv is copied
# into the final image, so it holds no build leftovers (pip caches, sources, wheels).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY gateway ./gateway
COPY producers ./producers
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER app:app
EXPOSE 8000
# SIGTERM drains: every open stream gets a short retry hint and closes within
# SSE_SHUTDOWN_GRACE_PERIOD, then the process exits 0. Give it that long to stop
# (docker stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM
# No HEALTHCHECK here: producers share the image and serve no HTTP. The compose file
# checks each gateway's /readyz.
# Exec form: python is PID 1 and receives the SIGTERM itself.
CMD ["python", "-m", "gateway", "--host", "0.0.0.0", "--port", "8000"]
