# One image for every Slipstream service; compose.yaml picks the command
# (`python -m slipstream_server.trigger_api`, `python -m slipstream_server.supervisor`, `slipstream migrate`, ...).
# Untested on the build machine (it has no Docker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package: proto/, libs/ and services/ (README.md is the package's readme).
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY libs ./libs
COPY services ./services
RUN pip install ".[server]" && rm -rf build

# Task modules are imported from the working directory: the supervisor serves `examples`.
COPY examples ./examples

RUN useradd --system --uid 10001 --no-create-home slipstream
USER slipstream

EXPOSE 3030 3031
# Ready: the service's /readyz answers 200 (Postgres and NATS reachable); its port is SLIPSTREAM_HTTP_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SLIPSTREAM_HTTP_PORT', '3030') + '/readyz', timeout=2)"]
CMD ["python", "-m", "slipstream_server.trigger_api"]
