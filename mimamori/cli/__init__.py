"""The ``mimamori`` command line: one front door to the service layer (the API is the other)."""
