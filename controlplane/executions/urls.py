"""Routes of the executions app."""
from django.urls import path

from controlplane.executions import api

urlpatterns = [
    path("executions", api.ExecutionListApi.as_view(), name="execution-list"),
    path("executions/diff", api.ExecutionDiffApi.as_view(), name="execution-diff"),
    path("executions/summary", api.ExecutionSummaryApi.as_view(), name="execution-summary"),
    path("executions/<str:execution_id>", api.ExecutionDetailApi.as_view(), name="execution-detail"),
    path("executions/<str:execution_id>/timeline", api.ExecutionTimelineApi.as_view(), name="execution-timeline"),
    path("executions/<str:execution_id>/events", api.ExecutionEventsApi.as_view(), name="execution-events"),
    path("executions/<str:execution_id>/cancel", api.ExecutionCancelApi.as_view(), name="execution-cancel"),
    path("executions/<str:execution_id>/replay", api.ExecutionReplayApi.as_view(), name="execution-replay"),
    path("dead-letters", api.DeadLetterListApi.as_view(), name="dead-letter-list"),
    path("dead-letters/replay", api.DeadLetterBulkReplayApi.as_view(), name="dead-letter-bulk-replay"),
    path("dead-letters/<int:dead_letter_id>", api.DeadLetterDetailApi.as_view(), name="dead-letter-detail"),
    path("dead-letters/<int:dead_letter_id>/replay", api.DeadLetterReplayApi.as_view(), name="dead-letter-replay"),
    path("dead-letters/<int:dead_letter_id>/discard", api.DeadLetterDiscardApi.as_view(), name="dead-letter-discard"),
]
