"""The HTTP API (FastAPI): the other front door to the service layer."""
