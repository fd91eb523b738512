"""Models of the web app."""
