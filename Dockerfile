# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies at the locked versions (hashes checked) first, so code changes reuse this layer.
COPY requirements.lock ./
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NEXTSTEP_HOST=0.0.0.0 \
    NEXTSTEP_PORT=8000 \
    NEXTSTEP_DATABASE_URL=sqlite:////data/nextstep.db
RUN useradd --system --uid 10001 --home-dir /data --create-home nextstep
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NEXTSTEP_PORT', '8000') + '/healthz', timeout=2)"]
# Migrations run once, separately: docker run IMAGE nextstep migrate
CMD ["nextstep", "serve"]
