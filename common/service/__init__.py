"""Process services: logging, settings, supervision, HTTP, Kubernetes list/watch."""
