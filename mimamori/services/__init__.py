"""The service layer: what staff and operators do, called by both front doors (CLI and API)."""
