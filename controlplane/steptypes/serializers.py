"""The step type a client reads: name, description, side effects and config schema."""
from __future__ import annotations

from rest_framework import serializers


class StepTypeOutSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True, help_text="What a graph node's `type` names.")
    description = serializers.CharField(read_only=True, help_text="What the step does.")
    side_effect_free = serializers.BooleanField(
        read_only=True,
        help_text="True when the step's only effect is its output (no I/O, no waiting): the engine may "
        "run it inside the transaction that records it.",
    )
    config_schema = serializers.JSONField(
        read_only=True,
        help_text="JSON Schema (draft 2020-12) of the node's `config`. Any value may instead be a "
        'string holding a {{ jq }} template, and any text a secret reference {"$secret": "<name>"}.',
    )
