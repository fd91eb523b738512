"""Tracing is opt-in and refuses settings it does not understand."""
import pytest

from workers import telemetry


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(telemetry, "_instrumented", False)
    yield
    if telemetry._instrumented:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().uninstrument()


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("FLOWPLANE_OTEL", raising=False)
    assert telemetry.instrument_celery() is False


def test_console_instruments_once(monkeypatch):
    monkeypatch.setenv("FLOWPLANE_OTEL", "console")
    assert telemetry.instrument_celery() is True
    assert telemetry.instrument_celery() is False


def test_unknown_mode_is_an_error_naming_the_value(monkeypatch):
    monkeypatch.setenv("FLOWPLANE_OTEL", "jaeger")
    with pytest.raises(ValueError, match="jaeger"):
        telemetry.instrument_celery()
