"""The OpenAPI schema generates cleanly: no warnings, and it validates against the OpenAPI spec."""
import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_without_warnings_and_validates(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target), "--validate", "--fail-on-warn")
    text = target.read_text()
    for route in ("/api/v1/workflows", "/api/v1/executions", "/api/v1/plans", "/api/v1/worker-groups"):
        assert route in text
