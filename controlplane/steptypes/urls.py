"""Routes of the step types API."""
from django.urls import path

from controlplane.steptypes import api

urlpatterns = [
    path("step-types", api.StepTypeListApi.as_view(), name="step-type-list"),
    path("step-types/<str:type>", api.StepTypeDetailApi.as_view(), name="step-type-detail"),
]
