"""Framework adapters for revolve, importable as ``revolve.integrations.<name>``.

Each adapter imports its framework; ``import revolve`` imports none of them.
"""
