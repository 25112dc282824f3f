"""IP address management: the allocator, its ring and paxos, and their gossip messages."""
