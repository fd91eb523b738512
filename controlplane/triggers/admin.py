from django.contrib import admin

from controlplane.triggers.models import ChainRun, ChainTrigger, Hook, HookDelivery, Schedule, ScheduleFire


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "deployment", "cron", "every_s", "timezone", "overlap", "last_tick_at")
    list_filter = ("overlap",)
    readonly_fields = ("periodic_task", "last_tick_at")


@admin.register(ScheduleFire)
class ScheduleFireAdmin(admin.ModelAdmin):
    list_display = ("schedule", "scheduled_at", "status", "execution", "reason")
    list_filter = ("status",)


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "deployment", "branch", "enabled", "created_at", "rotated_at")
    exclude = ("secret", "previous_secret")  # encrypted; rotate through the API to get a new one


@admin.register(HookDelivery)
class HookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("hook", "delivery_id", "execution", "ignored", "created_at")


@admin.register(ChainTrigger)
class ChainTriggerAdmin(admin.ModelAdmin):
    list_display = ("deployment", "upstream", "status", "created_at")


@admin.register(ChainRun)
class ChainRunAdmin(admin.ModelAdmin):
    list_display = ("upstream", "deployment", "execution", "next_try_at", "created_at")
