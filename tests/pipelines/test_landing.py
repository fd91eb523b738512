"""Landing steps and stores: roundtrips through file:// and memory://, pluggable schemes, bad keys."""

import json

import pytest

from pipelines.errors import PipelineError, StepFailed
from pipelines.steps import StepContext, get_step_type, run_step
from pipelines.steps.landing import FileStore, check_key, landing_store, register_landing_store


def ctx(**steps):
    return StepContext(execution_id="ex1", node_id="w", context={"steps": {k: {"output": v} for k, v in steps.items()}})


def write(config, context=None):
    return run_step({"type": "landing_write", "config": config}, context or ctx(), render_templates=False)


def read(config):
    return run_step({"type": "landing_read", "config": config}, ctx(), render_templates=False)


@pytest.mark.parametrize("store", ["file", "memory"])
def test_roundtrip_of_the_producers_output(tmp_path, store):
    url = f"file://{tmp_path}/landing" if store == "file" else "memory://roundtrip"
    config = {"store": url, "key": "ex1/extract->load", "edge": "extract->load"}
    output = {"rows": [1, 2, 3], "name": "ünïcode"}
    result = write(config, ctx(extract=output))
    assert result["key"] == "ex1/extract->load" and result["bytes"] > 0
    assert read(config) == output


def test_config_data_wins_over_upstream_output(tmp_path):
    config = {"store": f"file://{tmp_path}", "key": "ex1/a->b", "edge": "a->b"}
    write({**config, "data": [1, "two"]}, ctx(a={"ignored": True}))
    assert read(config) == [1, "two"]
    assert json.loads((tmp_path / "ex1" / "a->b.json").read_text()) == [1, "two"]


def test_blueprint_producer_ids_with_slashes(tmp_path):
    config = {"store": f"file://{tmp_path}", "key": "ex1/harvest/store->load", "edge": "harvest/store->load"}
    write(config, ctx(**{"harvest/store": {"n": 1}}))
    assert read(config) == {"n": 1}


def test_reading_before_anything_landed_is_retryable(tmp_path):
    with pytest.raises(StepFailed) as info:
        read({"store": f"file://{tmp_path}", "key": "ex1/none", "edge": "a->b"})
    assert info.value.retryable


def test_missing_producer_output_is_not_retryable(tmp_path):
    with pytest.raises(StepFailed) as info:
        write({"store": f"file://{tmp_path}", "key": "ex1/a->b", "edge": "a->b"})
    assert not info.value.retryable


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "a b", "..", "a\\b"])
def test_keys_cannot_escape_the_store(tmp_path, key):
    with pytest.raises(PipelineError):
        check_key(key)
    with pytest.raises(StepFailed):
        write({"store": f"file://{tmp_path}", "key": key, "data": 1})


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(PipelineError, match="file://"):
        landing_store("s3://bucket/prefix")
    with pytest.raises(StepFailed):
        write({"store": "s3://bucket/prefix", "key": "k", "data": 1})


def test_an_object_store_plugs_in_by_scheme(tmp_path):
    calls = []

    class Bucket(FileStore):
        def put(self, key, data):
            calls.append(key)
            super().put(key, data)

    register_landing_store("objtest", lambda url: Bucket(tmp_path / url.split("://", 1)[1]))
    config = {"store": "objtest://bucket-a", "key": "ex1/a->b", "data": {"x": 1}}
    write(config)
    assert read({"store": "objtest://bucket-a", "key": "ex1/a->b"}) == {"x": 1} and calls == ["ex1/a->b"]


def test_config_schema_requires_store_and_key():
    issues = get_step_type("landing_read").validate_config({}, "config")
    assert sorted((i.code, i.path) for i in issues) == [("missing_config", "config.key"),
                                                        ("missing_config", "config.store")]


def test_secrets_given_to_the_writer_land_masked(tmp_path):
    from pipelines.masking import masking_scope

    config = {"store": f"file://{tmp_path}", "key": "ex1/a->b", "edge": "a->b"}
    with masking_scope() as scope:
        run_step({"type": "landing_write", "config": {**config, "data": {"token": {"$secret": "t"}, "n": 1}}}, ctx(),
                 render_templates=False, secret_resolver=scope.recording({"t": "landed-secret-value"}.__getitem__))
    assert read(config) == {"token": "***", "n": 1}
    assert "landed-secret-value" not in (tmp_path / "ex1" / "a->b.json").read_text()
