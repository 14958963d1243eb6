# CareLoop in a container: HTTP mode (`python -m bot serve`) on port 3000.
# The build stage makes the wheel exactly as tests/processes/test_wheel_install.py does
# (pip wheel --no-deps --no-build-isolation), then the wheels of its dependencies; the
# runtime stage installs those wheels only (no sources, no compiler) and runs as a
# non-root user. Settings come from the environment; secrets from files (`*_FILE`, e.g.
# Docker or Kubernetes secrets). See compose.yaml and docs/admin.md.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir "setuptools>=68" "wheel>=0.41"
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
RUN python -m pip wheel --no-deps --no-build-isolation -w /wheels . \
 && python -m pip wheel --no-cache-dir -w /wheels /wheels/careloop-*.whl

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /srv/careloop --create-home careloop
COPY --from=build /wheels /tmp/wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels careloop \
 && rm -rf /tmp/wheels
WORKDIR /srv/careloop
USER careloop:careloop
ENV PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json \
    CONSULT_CONFIG=/etc/careloop/consult.toml \
    MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["python", "-m", "bot", "serve"]
