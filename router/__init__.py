"""The weave agent (``weaver``): gossip mesh, IPAM, data path, HTTP API, Kubernetes side."""
