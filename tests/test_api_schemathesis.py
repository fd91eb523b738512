"""The served API keeps to its OpenAPI schema, as schemathesis sees it from outside.

Schemathesis reads /api/v1/schema/ from a live server on the test database and sends generated
requests, valid and invalid, to every operation as the owner of a seeded tenant (so requests get
past authentication and, where it picks the seeded ids, past the tenancy checks). It must find no
server error, no status code the schema does not list, no undocumented content type and no
response that does not match its schema.

Minutes of work on two cores: it runs when FLOWPLANE_SCHEMATHESIS=1 (`.ci/run` sets it:
`FLOWPLANE_SCHEMATHESIS=1 bin/test -m schemathesis`); SCHEMATHESIS_MAX_EXAMPLES sets the budget
per operation (default 10), SCHEMATHESIS_SEED the seed, SCHEMATHESIS_CHECKS other checks to try and
SCHEMATHESIS_LOG where its report goes. Left out of the default checks, as DRF behaves by design:
negative_data_rejection (DRF turns a number into a string field's text, and reads an empty query
filter as no filter) and missing_required_header (a missing If-Match is a 428, not a 400).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.schemathesis,
    pytest.mark.skipif(os.environ.get("FLOWPLANE_SCHEMATHESIS") != "1", reason="set FLOWPLANE_SCHEMATHESIS=1 to fuzz the API"),
]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture
def seeded(transactional_db, settings):
    """A tenant with one of everything the API serves, its owner's token, and their ids by path parameter."""
    from rest_framework.authtoken.models import Token

    from controlplane.catalog.services import blueprint_create, blueprint_publish, job_template_create, secret_set
    from controlplane.deployments.services import plan_create
    from controlplane.executions.services import execution_start
    from tests.controlplane.catalog.conftest import simple_blueprint
    from tests.controlplane.executions.builders import job, make_deployment, make_group, make_live_worker
    from tests.factories import add_member, make_company, make_project, make_user, make_version, make_workflow

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    owner = make_user("owner")
    company = make_company("acme", owner=owner)
    member = add_member(company, make_user("member"))
    project = make_project(company, "data")
    workflow = make_workflow(project, "ingest", user=owner)
    version = make_version(workflow, user=owner)
    group = make_group(company, "ingest")
    worker = make_live_worker("worker-1", group)
    deployment = make_deployment(project, [job("a"), job("b")], [{"from": "a", "to": "b"}], user=owner)
    plan = plan_create(workflow=workflow, version=version, environment="staging", user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    gated = make_deployment(project, [job("ok", "approval", config={"approvers": {"roles": ["owner"]}})], user=owner)
    waiting, _ = execution_start(deployment=gated, input={}, user=owner)  # waits at its approval
    blueprint = blueprint_create(company=company, name="fanout", description="", user=owner)
    blueprint_version, _ = blueprint_publish(blueprint=blueprint, document=simple_blueprint(), user=owner)
    template = job_template_create(company=company, name="say", step_type="log", defaults={"message": "hi"}, param_schema={})
    secret, _ = secret_set(company=company, name="api.token", value="s3cret", user=owner)
    return {
        "token": Token.objects.create(user=owner).key,
        "ids": {
            "company_id": [company.id], "project_id": [project.id], "workflow_id": [workflow.id],
            "version_id": [version.id], "group_id": [group.id], "worker_id": [worker.id],
            "deployment_id": [deployment.id], "plan_id": [plan.id], "execution_id": [execution.id],
            "user_id": [member.id, owner.id],
            "approval_id": list(waiting.approvals.values_list("id", flat=True)),
            # The catalog's viewsets name every id `id`.
            "id": [str(blueprint.id), str(blueprint_version.id), str(template.id), str(secret.id)],
        },
    }


@pytest.mark.timeout(900)
def test_the_served_api_keeps_to_its_schema(live_server, seeded, tmp_path):
    config = tmp_path / "schemathesis.toml"
    # Seeded ids half the time, so operations reach real objects and not only 404s.
    config.write_text(
        "[dictionaries]\n"
        + "".join(f"{name} = {{ values = {json.dumps(values, default=str)} }}\n" for name, values in seeded["ids"].items())
        + "[parameters]\n"
        + "".join(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}\n' for name in seeded["ids"])
    )
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
        f"{live_server.url}/api/v1/schema/?format=json",
        "--url", live_server.url,
        "--header", f"Authorization: Token {seeded['token']}",
        "--checks", os.environ.get("SCHEMATHESIS_CHECKS", CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"),
        "--workers", "2",
        "--seed", os.environ.get("SCHEMATHESIS_SEED", "1"),
        "--generation-database", "none",
        "--request-timeout", "30",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=840, cwd=tmp_path)
    output = result.stdout + result.stderr
    Path(os.environ.get("SCHEMATHESIS_LOG", tmp_path / "schemathesis.log")).write_text(output)
    assert result.returncode == 0, output[-20_000:]
