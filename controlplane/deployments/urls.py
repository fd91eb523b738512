"""Routes of the deployments app."""
urlpatterns: list = []
