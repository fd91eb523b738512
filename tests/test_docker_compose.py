"""docker-compose.yml and the Dockerfile name only things that exist (no Docker engine needed).

Every service's command must resolve in this project: a `manage.py` command Django knows, a
Celery subcommand of the `workers` app, gunicorn with a config module that imports and a WSGI
app it names; every environment variable given to the app is one the code reads (or Flower's).
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
APP_SERVICES = {name: spec for name, spec in COMPOSE["services"].items() if "build" in spec}
# Variables of programs other than ours that the compose file configures.
THIRD_PARTY_ENV = {"FLOWER_BASIC_AUTH"}


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    pattern = re.compile(r"""(?:os\.environ\.get|os\.environ\[|env_flag|env_list|environ\.setdefault|_int|_env)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
    for folder in ("controlplane", "workers", "pipelines"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return names


def check_command(argv: list[str], where: str) -> None:
    from django.core.management import get_commands

    if argv[:2] == ["python", "manage.py"]:
        assert argv[2] in get_commands(), f"{where}: manage.py has no command {argv[2]!r}"
    elif argv[0] == "celery":
        assert argv[1:3] == ["-A", "workers"], f"{where}: celery must run the workers app"
        from workers import app

        assert app.main == "flowplane"
        assert argv[3] in {"worker", "beat", "flower"}, f"{where}: unknown celery subcommand {argv[3]!r}"
        if argv[3] == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            assert all(q == "controlplane" or re.fullmatch(r"wg\.[a-z0-9-]+\.[a-z0-9-]+", q) for q in queues), where
    elif argv[0] == "gunicorn":
        assert argv[1] == "-c" and argv[2].startswith("python:"), f"{where}: gunicorn without the config module"
        config = importlib.import_module(argv[2][len("python:"):])
        module, _, attribute = config.wsgi_app.partition(":")
        assert hasattr(importlib.import_module(module), attribute), f"{where}: no WSGI app {config.wsgi_app}"
        assert config.worker_class == "gthread" and config.workers >= 1 and config.threads >= 1
    else:
        pytest.fail(f"{where}: unexpected command {argv!r}")


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_app_service_runs_a_command_of_the_project(service):
    check_command(APP_SERVICES[service]["command"], f"service {service}")


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_variable_given_to_the_app_is_read_by_it(service):
    known = variables_read_by_the_code() | THIRD_PARTY_ENV
    unknown = set(APP_SERVICES[service]["environment"]) - known
    assert not unknown, f"service {service} sets variables nothing reads: {sorted(unknown)}"


def test_production_settings_and_the_operator_services_are_there():
    env = COMPOSE["x-app"]["environment"]
    assert env["DEBUG"] == "0"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), "SECRET_KEY must be required, never defaulted"
    assert "--bind" in APP_SERVICES["web"]["command"]
    assert APP_SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    bootstrap = APP_SERVICES["bootstrap"]
    assert bootstrap["command"][2] == "bootstrap_tenant" and bootstrap["restart"] == "no"
    assert bootstrap["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_dockerfile_collects_static_files_and_serves_with_gunicorn():
    text = (REPO_ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    check_command(cmd, "Dockerfile CMD")
    assert re.search(r"^RUN .*manage\.py collectstatic --noinput", text, re.M)
    assert re.search(r"^ENV .*\bDEBUG=0\b", text, re.M)
    assert "SECRET_KEY" not in re.search(r"^ENV .*$", text, re.M).group(0), "no key baked into the image"
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the image runs as an unprivileged user"


TRACED = ["web", "beat", *sorted(name for name in APP_SERVICES if name.startswith("worker-"))]


@pytest.mark.parametrize("service", TRACED)
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"])
def test_web_workers_and_beat_pass_the_tracing_variables_through_empty_by_default(service, variable):
    assert APP_SERVICES[service]["environment"][variable] == f"${{{variable}:-}}", (
        f"service {service} must pass {variable} through, empty unless the operator sets it")


def test_an_empty_endpoint_means_no_tracing_and_an_empty_name_keeps_each_processs_own():
    from controlplane.core.telemetry import build_provider, telemetry_mode

    compose_default = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_SERVICE_NAME": ""}
    assert telemetry_mode(compose_default) == "off"
    assert telemetry_mode({**compose_default, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert len(TRACED) >= 4  # web, beat and at least the control plane's and one group's workers
    provider = build_provider("flowplane-beat", "console", compose_default)
    assert provider.resource.attributes["service.name"] == "flowplane-beat"
    provider.shutdown()
