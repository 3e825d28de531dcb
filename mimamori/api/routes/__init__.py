"""One router per domain; each route is a thin call into the service layer."""
