"""What npc (the policy controller) and router (the agent) both need, below both:

* ``contract``: Weave's fixed names both halves must agree on;
* ``kernel``: running commands, nfnetlink framing, entering network namespaces;
* ``service``: logging, settings, the supervisor, the HTTP server, the Kubernetes client
  and a generic list/watch;
* ``lab``: network-namespace labs for demos and tests.

It imports neither ``npc`` nor ``router``.
"""
