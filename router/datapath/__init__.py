"""The agent's data path: the overlays that carry pods' Ethernet frames between peers.

Weave Net gives every mesh connection an *overlay forwarder* and counts the connection
as established only once a forwarder's data path is shown to work (its heartbeats are
acknowledged); a connection whose forwarders all fail is closed.  The Go original has
two overlays behind an "overlay switch": fastdp (kernel VXLAN through Open vSwitch) and
sleeve (weave's own UDP encapsulation on the mesh port, 6783).  This package has sleeve
and the switch; a Go peer and this agent agree on sleeve, so they form one mesh.

Layering inside the package (checked by ``tests/test_layers.py``): the wire formats and
state machines are pure (no sockets, no asyncio) —

* :mod:`.sleeve_frames`: the sleeve datagram (sender name, frames) and its special frames;
* :mod:`.sleeve_crypto`: plain and NaCl-sealed datagrams, nonces, the replay window;
* :mod:`.control`: control messages over the mesh connection (sleeve's tags 1-3, the
  switch's tag 7 with its sub-forwarder index) and the choice of common overlays;
* :mod:`.sleeve_forwarder`: one connection's sleeve forwarder as a state machine
  (heartbeats, acknowledgement, path MTU discovery, fragmentation test, timeouts);

and the I/O seam drives them —

* :mod:`.sleeve`: the UDP socket shared by every connection, the per-connection driver;
* :mod:`.switch`: the overlay switch over the overlays of :mod:`router.agent.overlay`.
"""
