"""The mesh control plane: identity, wire protocol, gossip, topology and routes."""
