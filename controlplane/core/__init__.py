"""Cross-cutting pieces: the application error type, the API exception handler, parsers."""
