"""Network-namespace lab: a small Weave-like cluster on one machine, for tests and demos.

Nodes are namespaces with a ``weave`` bridge (br_netfilter on) and a
``vethwe-bridge`` port into a shared fabric namespace; pods are namespaces with
``eth0`` on their node's bridge, served (TCP/UDP/raw SCTP on 80 and 81) by
threads of the calling process.  See :class:`Lab`.
"""

from common.kernel.netns import in_netns
from common.lab.lab import Lab
from common.lab.matrix import (
    Comparison,
    Matrix,
    compare,
    expect_all,
    format_truth_table,
    ordered_pairs,
    probe_matrix,
    retry_mismatches,
    validate,
)
from common.lab.netns import LabError, cleanup_stale
from common.lab.probe import ProbeResult, Protocol
from common.lab.topology import LabPod

__all__ = [
    "Comparison",
    "Lab",
    "LabError",
    "LabPod",
    "Matrix",
    "ProbeResult",
    "Protocol",
    "cleanup_stale",
    "compare",
    "expect_all",
    "format_truth_table",
    "in_netns",
    "ordered_pairs",
    "probe_matrix",
    "retry_mismatches",
    "validate",
]
