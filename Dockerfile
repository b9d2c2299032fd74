# One image for the gateway and the producers (docker-compose.yml runs both from it).
#   docker build -t redis-sse-gateway .
#   docker run -e REDIS_URL=redis://redis:6379/0 -p 8000:8000 redis-sse-gateway
#   docker run -e REDIS_URL=redis://redis:6379/0 redis-sse-gateway python -m producers echo --message hi

# The build stage installs the project into a virtualenv with the versions pinned in uv.lock
# (the same set ./scripts/test proves); only that virtualenv is copied into the final image,
# so it holds no build leftovers (uv, caches, sources, wheels).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# uv at the version pyproject.toml's [tool.uv] required-version names (uv refuses another).
RUN pip install "uv==0.13.9"
WORKDIR /src
# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY README.md ./
COPY client ./client
COPY contract ./contract
COPY gateway ./gateway
COPY producers ./producers
RUN uv sync --locked --no-dev --no-editable

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
