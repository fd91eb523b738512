"""Routes of the fleet app."""
urlpatterns: list = []
