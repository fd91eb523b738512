FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY controlplane ./controlplane
COPY workers ./workers
COPY templates ./templates
COPY manage.py ./
RUN pip install --no-cache-dir . gunicorn
EXPOSE 8000
CMD ["python", "-m", "gunicorn", "controlplane.wsgi:application", "--bind", "0.0.0.0:8000"]
