"""Worker database connections: kept across tasks, pinged only after a pause, replaced once broken."""
from __future__ import annotations

import pytest
from django.db import OperationalError, connection, connections

from workers import connections as policy

pytestmark = pytest.mark.django_db(transaction=True)  # outside a test transaction, as in a worker


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("connections are kept across tasks on PostgreSQL (SQLite closes them after each)")


def _after_task(idle_s: float) -> None:
    policy._remember_task_end()
    policy._last_task_end -= idle_s
    policy._prepare_database_connections()


def test_a_connection_the_previous_task_used_moments_ago_is_not_pinged():
    connection.ensure_connection()

    _after_task(idle_s=0)

    assert connection.connection is not None and connection.health_check_done is True


def test_a_connection_idle_for_a_while_is_pinged_before_use():
    connection.ensure_connection()

    _after_task(idle_s=policy.PING_AFTER_IDLE_S + 1)

    assert connection.connection is not None and connection.health_check_done is False


def test_a_connection_that_broke_is_replaced_before_the_next_task():
    connection.ensure_connection()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    finally:
        other.close()
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")

    _after_task(idle_s=0)

    assert connection.connection is None  # dropped, not marked healthy
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
