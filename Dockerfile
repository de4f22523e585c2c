# FairDerm image for the web server and the Celery workers (CPU and GPU).
# torch 2.14.1 from PyPI is the CUDA 13 build: it uses the GPU when the container gets one
# (docker-compose.yml reserves it for worker-gpu) and runs on the CPU otherwise.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=backend.settings

RUN groupadd --system fairderm && useradd --system --gid fairderm --home-dir /app fairderm
WORKDIR /app

# Pango (and its fonts) for WeasyPrint's PDF export of the go/no-go report.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY manage.py ./
COPY backend ./backend
COPY generation ./generation
COPY validation ./validation
COPY worker ./worker
COPY templates ./templates
COPY static ./static

# Static files are collected at build time with a throw-away key; whitenoise serves them.
RUN SECRET_KEY=collectstatic-only STATIC_ROOT=/app/staticfiles FAIRDERM_VAR_DIR=/tmp/fairderm \
    python manage.py collectstatic --noinput \
    && mkdir -p /data/media /data/artifacts /models \
    && chown -R fairderm:fairderm /data /models

ENV STATIC_ROOT=/app/staticfiles FAIRDERM_VAR_DIR=/data/var
USER fairderm
EXPOSE 8000
CMD ["gunicorn", "backend.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "60"]
