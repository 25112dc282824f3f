"""Checks against the real things (the Go weaver, a real kube-apiserver): not run in CI."""
