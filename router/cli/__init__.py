"""The agent's command line: ``weave`` (status, report, connect, forget, version)."""
