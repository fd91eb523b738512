"""Models of the workflows app."""
