"""Routes of the workflows app."""
urlpatterns: list = []
