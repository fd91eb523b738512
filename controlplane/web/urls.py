"""Routes of the operator pages (server-rendered, login required), their few actions, and their sign-in.

The pages sign in through Django's auth views at /login/ and /logout/, not through the admin's
login (which admits staff only): any member of a company signs in here with their username and
password, and every page then shows only the companies they belong to.
"""
from django.contrib.auth import views as auth_views
from django.urls import path

from controlplane.web import actions, approval_pages, plan_pages, views, workflow_pages

app_name = "web"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="web/login.html", redirect_authenticated_user=True),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only (Django 5): a link cannot sign you out
    path("", views.dashboard, name="dashboard"),
    path("executions/", views.execution_list, name="execution-list"),
    path("executions/<uuid:execution_id>/", views.execution_detail, name="execution-detail"),
    path("deployments/<int:deployment_id>/", views.deployment_detail, name="deployment-detail"),
    path("deployments/<int:deployment_id>/<slug:action>/", actions.deployment_action, name="deployment-action"),
    path("executions/<uuid:execution_id>/<slug:action>/", actions.execution_action, name="execution-action"),
    path("fleet/", views.fleet, name="fleet"),
    path("executions/<uuid:execution_id>/progress.json", views.execution_progress, name="execution-progress"),
    path("deployments/<int:deployment_id>/drift/<slug:action>/", actions.drift_action, name="drift-action"),
    path("workflows/", workflow_pages.workflow_list, name="workflow-list"),
    path("workflows/<int:workflow_id>/", workflow_pages.workflow_detail, name="workflow-detail"),
    path("workflows/<int:workflow_id>/diff/", workflow_pages.workflow_diff, name="workflow-diff"),
    path("workflows/<int:workflow_id>/do/<slug:action>/", actions.workflow_action, name="workflow-action"),
    path("workflows/<int:workflow_id>/plan/", plan_pages.plan_new, name="plan-new"),
    path("plans/<uuid:plan_id>/", plan_pages.plan_detail, name="plan-detail"),
    path("plans/<uuid:plan_id>/apply/", plan_pages.plan_apply, name="plan-apply"),
    path("dead-letters/", views.dead_letter_list, name="dead-letter-list"),
    path("approvals/", approval_pages.approval_inbox, name="approval-inbox"),
    path("approvals/<int:approval_id>/decide/", approval_pages.approval_decide_action, name="approval-decide"),
    path("dead-letters/<int:dead_letter_id>/replay/", actions.dead_letter_replay, name="dead-letter-replay"),
]
