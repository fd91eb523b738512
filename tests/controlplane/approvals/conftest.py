"""Fixtures of the approvals tests: acme's groups with live worker rows (no processes)."""
from tests.controlplane.executions.conftest import _deploy_settings, groups  # noqa: F401  (fixtures)
