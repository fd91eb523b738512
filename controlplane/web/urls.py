"""Routes of the web app."""
urlpatterns: list = []
