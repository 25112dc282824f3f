"""Interop harness: the Go Weave Net 2.8.1 weaver in lab namespaces (not run in CI)."""
