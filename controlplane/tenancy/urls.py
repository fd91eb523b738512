"""Routes of the tenancy app."""
from django.urls import path

from controlplane.tenancy import api

urlpatterns = [
    path("companies", api.CompanyListApi.as_view(), name="company-list"),
    path("companies/<int:company_id>", api.CompanyDetailApi.as_view(), name="company-detail"),
    path("companies/<int:company_id>/members", api.MemberListApi.as_view(), name="company-member-list"),
    path("companies/<int:company_id>/members/<int:user_id>", api.MemberDetailApi.as_view(), name="company-member-detail"),
    path("projects", api.ProjectListApi.as_view(), name="project-list"),
    path("projects/<int:project_id>", api.ProjectDetailApi.as_view(), name="project-detail"),
]
