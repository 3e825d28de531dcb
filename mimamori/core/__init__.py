"""The foundations every layer may use: configuration, errors, retries, metrics, time formats."""
