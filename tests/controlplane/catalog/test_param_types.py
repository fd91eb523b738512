"""Param schemas of blueprints and job templates use the step config's value types and checker."""
import pytest

from controlplane.catalog.validation import param_schema_errors
from pipelines.steps import get_step_type
from pipelines.value_types import VALUE_TYPES


def test_unknown_param_type_lists_the_shared_vocabulary():
    (error,) = param_schema_errors({"n": {"type": "str"}}, "params")
    assert (error["path"], error["code"]) == ("params.n.type", "invalid_field")
    assert ", ".join(VALUE_TYPES) in error["message"]


@pytest.mark.parametrize(
    "type_name, default, field_type_example",
    [
        pytest.param("integer", 2.0, ("fail", "fail_attempts"), id="float-is-no-integer"),
        pytest.param("number", True, ("delay", "seconds"), id="bool-is-no-number"),
        pytest.param("boolean", 0, ("fail", "retryable"), id="int-is-no-bool"),
    ],
)
def test_a_default_that_fits_no_param_fits_no_step_field(type_name, default, field_type_example):
    """Where a param's value lands in a step's config, both checks answer the same."""
    errors = param_schema_errors({"n": {"type": type_name, "default": default}}, "params")
    assert [(e["path"], e["code"]) for e in errors] == [("params.n.default", "invalid_field")]
    step, key = field_type_example
    issues = get_step_type(step).validate_config({key: default})
    assert [i.path for i in issues] == [f"config.{key}"]
