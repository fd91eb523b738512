"""Routes of the executions app."""
urlpatterns: list = []
