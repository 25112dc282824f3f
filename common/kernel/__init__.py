"""The kernel seam both halves share: commands, nfnetlink framing, network namespaces."""
