"""The agent process: one asyncio event loop holding the mesh, its connections and the
services plugged into it (IPAM, data path, Kubernetes)."""
