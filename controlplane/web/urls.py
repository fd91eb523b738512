"""Routes of the operator pages (server-rendered, login required), their few actions, and their sign-in.

The pages sign in through Django's auth views at /login/ and /logout/, not through the admin's
login (which admits staff only): any member of a company signs in here with their username and
password, and every page then shows only the companies they belong to.
"""
from django.contrib.auth import views as auth_views
from django.urls import path

from controlplane.web import actions, views

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
]
