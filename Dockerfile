# syntax=docker/dockerfile:1
#
# Image for weave-npc-py: the Python weave-npc, a drop-in for the `weave-npc` container of
# the weave-net DaemonSet (see manifests/).  Build from the repository root:
#
#     docker build -t weave-npc-py:0.1.0 .
#
# Debian rather than the original's Alpine: the nf_tables bindings (python3-nftables) exist
# only as a Debian package, for Debian's own /usr/bin/python3.  So the virtualenv in
# /opt/npc is made from that interpreter with --system-site-packages, and both stages use
# the same base image, so the interpreter the venv points at is at the same path.
#
# The image runs as root, by necessity: npc rewrites the host's iptables, ipsets and
# nf_tables (the pod has hostNetwork), which needs CAP_NET_ADMIN in the host's network
# namespace, and the DaemonSet runs it privileged, as the original does.  A non-root user
# would only have to be given those capabilities back; it would confine nothing.

# ---- build: the project and its PyPI dependencies into /opt/npc -------------------------
FROM debian:12-slim AS build

# Package versions are not pinned, in either stage: the tag follows Debian 12 point
# releases, and pinning exact versions would hold back security updates (and break the
# build whenever the archive drops the pinned version).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml ./
COPY common ./common
COPY npc ./npc
COPY router ./router
RUN python3 -m venv --system-site-packages /opt/npc \
 && /opt/npc/bin/pip install --no-cache-dir .

# ---- runtime ------------------------------------------------------------------------------
FROM debian:12-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="weave-npc-py" \
      org.opencontainers.image.description="Weave Net network policy controller (weave-npc), re-implemented in Python" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"

# iptables ships both iptables-nft and iptables-legacy; npc uses the one the node uses
# (IPTABLES_BACKEND, or detected as weave does).  tini is PID 1: it passes signals on to
# npc and reaps orphaned processes, which a Python PID 1 does not do.
# Not pinned, as in the build stage: security updates must flow.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-nftables iptables ipset nftables conntrack iproute2 tini \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/npc /opt/npc
COPY --chmod=0755 scripts/launch.sh /usr/local/bin/launch.sh

ENV PATH="/opt/npc/bin:${PATH}" \
    PYTHONUNBUFFERED=1

# /metrics, /healthz, /readyz (--metrics-addr; the pod uses the host's network)
EXPOSE 6781

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/launch.sh"]
