"""JSON differences as paths (the execution diff's output differs)."""
from __future__ import annotations

import pytest

from pipelines.jsondiff import json_diff


@pytest.mark.parametrize(
    "left, right, paths",
    [
        pytest.param({"a": 1}, {"a": 1}, (), id="identical"),
        pytest.param({"items": [{"id": 1}, {"id": 2}, {"id": 3}]}, {"items": [{"id": 1}, {"id": 2}, {"id": 4}]},
                     ("$.items[2].id",), id="nested-array-item"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, ("$.b",), id="key-only-on-one-side"),
        pytest.param([1, 2], [1, 2, 3], ("$[2]",), id="extra-array-item"),
        pytest.param({"x y": 1}, {"x y": 2}, ('$["x y"]',), id="quoted-key"),
        pytest.param({"n": 1}, {"n": True}, ("$.n",), id="number-vs-bool"),
        pytest.param({"n": 1}, {"n": 1.0}, (), id="same-number"),
        pytest.param({"o": {"a": 1}}, {"o": [1]}, ("$.o",), id="type-change"),
        pytest.param(None, {"a": 1}, ("$",), id="null-vs-object"),
    ],
)
def test_json_diff_names_the_deepest_differing_paths(left, right, paths):
    diff = json_diff(left, right)
    assert diff.paths == paths and diff.identical == (not paths) and not diff.truncated


def test_json_diff_stops_at_its_limit():
    diff = json_diff(list(range(10)), list(range(10, 20)), limit=3)
    assert diff.paths == ("$[0]", "$[1]", "$[2]") and diff.truncated
