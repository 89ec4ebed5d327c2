"""Scheduled pre-screens of whole populations: run bookkeeping, the run lock, which patients a
run must (re-)screen, and when a stored result goes stale. `connector.pipeline` drives them."""
