# One image for every role (api, worker, beat, flower, migrate, receiver);
# only the command differs. See docker-compose.yml.

# ---- builder: a virtualenv with the pinned runtime dependencies ------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# The lock file alone first: this layer is rebuilt only when it changes. Every package,
# dependencies included, is pinned with its hashes (make requirements.lock), and pip
# refuses anything else.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock

# ---- runtime ---------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    GUNICORN_BIND=0.0.0.0:8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app

# Application code only, root-owned and read-only for the app user: no process writes
# here (beat keeps its schedule in memory and its heartbeat in /tmp).
COPY gunicorn.conf.py ./
COPY sql/ ./sql/
COPY messaging/ ./messaging/
COPY worker/ ./worker/
COPY api/ ./api/
COPY receiver/ ./receiver/

USER app

EXPOSE 8080

# Liveness of the API (the default command): GET /health on the port of GUNICORN_BIND,
# whatever it is set to at run time. Other roles override or disable this in
# docker-compose.yml. No curl in the slim image: use the stdlib.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['GUNICORN_BIND'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4)"]

# Gunicorn, Celery worker and beat all treat SIGTERM as a graceful shutdown.
# Compose runs the processes under `init: true` (tini) so signals are
# forwarded and zombies reaped; with plain `docker run`, add `--init`.
STOPSIGNAL SIGTERM

CMD ["gunicorn", "-c", "gunicorn.conf.py", "api:create_app()"]
