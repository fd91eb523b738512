"""Routes of the triggers app."""
from django.urls import path

from controlplane.triggers import api

urlpatterns = [
    path("webhooks", api.HookListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:hook_id>", api.HookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:hook_id>/rotate", api.HookRotateApi.as_view(), name="webhook-rotate"),
    path("webhooks/<int:hook_id>/retire-previous", api.HookRetirePreviousApi.as_view(), name="webhook-retire-previous"),
    path("hooks/<str:token>", api.HookReceiveApi.as_view(), name="hook-receive"),
    path("schedules", api.ScheduleListApi.as_view(), name="schedule-list"),
    path("schedules/<int:schedule_id>/fires", api.ScheduleFiresApi.as_view(), name="schedule-fires"),
]
