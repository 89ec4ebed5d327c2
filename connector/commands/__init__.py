"""One module per CLI command; `connector.cli` loads them lazily so start-up stays fast."""
