"""Routes of the tenancy app."""
urlpatterns: list = []
