# The control plane's image: web (gunicorn), beat, Flower and workers run from it with production
# settings (DEBUG off; SECRET_KEY must come from the environment or the process refuses to start).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=0 STATIC_ROOT=/app/static FLOWPLANE_VAR_DIR=/app/var \
    WEB_BIND=0.0.0.0:8000
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY controlplane ./controlplane
COPY workers ./workers
COPY templates ./templates
COPY manage.py ./
RUN pip install --no-cache-dir .
# Static files (admin, pages, Swagger UI and Redoc) are collected into the image and served by
# WhiteNoise from the web process. collectstatic signs nothing: a throwaway key is enough here.
RUN SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput \
    && useradd --system --home-dir /app app && mkdir -p /app/var && chown app /app/var
USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "python:controlplane.gunicorn_conf"]
