"""Fixtures that start real worker processes against PostgreSQL and the test's Redis database."""
from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings

from tests.e2e.harness import WorkerProcess


def _require_real_services() -> None:
    problems = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("DATABASE_URL is not PostgreSQL")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        problems.append("CELERY_BROKER_URL is not Redis")
    if problems:
        message = "end-to-end tests need real services (" + "; ".join(problems) + "); run them with bin/test"
        if os.environ.get("FLOWPLANE_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_test_db():
    """The test run's own Redis database, flushed before use; never the default database 0."""
    _require_real_services()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if db == 0:
        pytest.fail("tests must use a Redis database number other than 0 (set TEST_REDIS_DB)")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def start_worker(redis_test_db, transactional_db, tmp_path):
    """Start `celery worker` processes; all are stopped by pid when the test ends."""
    started: list[WorkerProcess] = []

    def start(queues, hostname, *, concurrency=1, extra_env=None, wait=True, pool="prefork"):
        worker = WorkerProcess(
            queues=list(queues), hostname=hostname, concurrency=concurrency, pool=pool, extra_env=extra_env or {}
        )
        worker.start(tmp_path)
        started.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def landing_dir(settings, tmp_path):
    """The landing store of the test: a tmp directory, for the planner (settings) and workers (env)."""
    path = tmp_path / "landing"
    path.mkdir()
    settings.LANDING_STORE_URL = f"file://{path}"
    return path
