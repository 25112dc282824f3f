"""The agent's HTTP API and what it shows: status pages, the report, metrics."""
