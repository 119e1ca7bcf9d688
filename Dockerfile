# syntax=docker/dockerfile:1
# tidings in one small image: `docker build -t tidings .` (see docs/deploy.md).

# -- build: the wheel, then a virtualenv with it and its pinned dependencies --
FROM python:3.11-slim AS build
ENV VIRTUAL_ENV=/opt/tidings PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md requirements.lock ./
COPY clients/js/tidings.js clients/js/tidings.js
COPY src src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip wheel --no-deps --wheel-dir dist .
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv "$VIRTUAL_ENV" \
    && set -- dist/tidings-*.whl \
    && "$VIRTUAL_ENV/bin/pip" install --constraint requirements.lock "$1[postgres,redis]"

# -- runtime: the virtualenv only, run by an unprivileged user --
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tidings \
        --shell /usr/sbin/nologin tidings \
    && install -d -o tidings -g tidings -m 0700 /var/lib/tidings
COPY --from=build /opt/tidings /opt/tidings
ENV PATH=/opt/tidings/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIDINGS_DATA_DIR=/var/lib/tidings \
    TIDINGS_PORT=8000 \
    TIDINGS_DRAIN_GRACE=10
USER tidings
WORKDIR /var/lib/tidings
# The SQLite store and the generated secret of a single node live here.
VOLUME /var/lib/tidings
EXPOSE 8000
# /healthz: the process answers (the balancer watches /readyz). No curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TIDINGS_PORT', '8000'), timeout=2)"]
# SIGTERM drains for TIDINGS_DRAIN_GRACE seconds: give `docker stop` longer (-t 20).
STOPSIGNAL SIGTERM
CMD ["tidings", "serve", "--host", "0.0.0.0"]
