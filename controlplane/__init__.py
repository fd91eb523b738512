"""The Django control plane: tenancy, workflows, fleet, executions, catalog and deployments."""
