"""Input and output shapes of the triggers API."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.triggers.models import Hook, Schedule, ScheduleFire


class HookCreateIn(serializers.Serializer):
    deployment = serializers.IntegerField(min_value=1, help_text="The deployment whose runs the hook starts.")
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                 help_text="What the hook is for.")
    branch = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                   help_text="GitHub push deliveries start a run only for this branch; empty: any.")


class HookOut(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where senders POST deliveries.")
    rotating = serializers.SerializerMethodField(help_text="True while the previous secret is still valid.")

    class Meta:
        model = Hook
        fields = ["id", "deployment", "name", "branch", "token", "url", "enabled", "rotating", "created_at",
                  "rotated_at"]
        read_only_fields = fields

    def get_url(self, hook: Hook) -> str:
        return f"/api/v1/hooks/{hook.token}"

    def get_rotating(self, hook: Hook) -> bool:
        return bool(hook.previous_secret)


class HookWithSecretOut(HookOut):
    secret = serializers.CharField(help_text="The signing secret: shown this once, store it now.")

    class Meta(HookOut.Meta):
        fields = [*HookOut.Meta.fields, "secret"]
        read_only_fields = fields


class DeliveryOut(serializers.Serializer):
    execution = serializers.UUIDField(allow_null=True, help_text="The run the delivery started (or had started).")
    created = serializers.BooleanField(help_text="False for a redelivery: the first delivery's run stands.")
    ignored = serializers.CharField(allow_blank=True, help_text="Why no run started, if none did.")


class ScheduleFireOut(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFire
        fields = ["scheduled_at", "status", "execution", "reason", "created_at"]
        read_only_fields = fields


class ScheduleOut(serializers.ModelSerializer):
    enabled = serializers.SerializerMethodField(help_text="Whether beat fires it (false while paused).")

    class Meta:
        model = Schedule
        fields = ["id", "deployment", "name", "cron", "every_s", "timezone", "overlap", "catchup_window_s", "input",
                  "enabled", "last_tick_at"]
        read_only_fields = fields

    def get_enabled(self, schedule: Schedule) -> bool:
        return bool(schedule.periodic_task and schedule.periodic_task.enabled)


class ScheduleFilterIn(serializers.Serializer):
    deployment = serializers.IntegerField(min_value=1, required=False, help_text="Only this deployment's schedules.")
