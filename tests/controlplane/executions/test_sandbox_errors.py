"""How a jq program over its limits is classified when a step runs (no broker, no database)."""
import time

from controlplane.executions.services.attempts import error_dict, run_spec
from pipelines import sandbox
from pipelines.errors import ResourceExhausted


def spec_run(spec, timeout_s):
    return run_spec(spec, context={"trigger": {}}, company_id=0, execution_id="ex-1", node_id="n", attempt=1,
                    shard=0, shard_count=1, idempotency_key="ex-1:n:0", timeout_s=timeout_s)


def test_resource_exhausted_is_not_retryable_and_names_its_limit():
    error = error_dict(ResourceExhausted("jq program exceeded its 5s time budget", limit="time", budget=5.0,
                                         path="config.program", expression="def f: f; f"))
    assert error == {"message": "config.program: jq program exceeded its 5s time budget", "retryable": False,
                     "details": {"reason": "resource_exhausted", "limit": "time", "budget_s": 5.0,
                                 "path": "config.program"}, "code": "resource_exhausted"}


def test_a_looping_jq_step_and_a_looping_template_fail_within_timeout_s():
    for spec in ({"type": "jq", "config": {"program": "def f: f; f"}},
                 {"type": "log", "config": {"message": "{{ last(range(1e12)) }}"}}):
        started = time.monotonic()
        _, output, error = spec_run(spec, timeout_s=1)
        assert output is None and time.monotonic() - started < 4
        assert error["retryable"] is False and error["code"] == "resource_exhausted"
    assert spec_run({"type": "jq", "config": {"program": "[range(3)]"}}, timeout_s=1)[1] == [0, 1, 2]


def test_the_control_plane_configures_the_sandbox_from_settings(settings):
    assert sandbox.limits() == sandbox.Limits(time_budget_s=settings.JQ_TIME_BUDGET_S,
                                              memory_mib=settings.JQ_MEMORY_MIB)
