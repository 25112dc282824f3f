"""The one base class of kernel failures: a command that failed, a netlink request the
kernel refused, a libnftables transaction that did not commit.  Callers that only need
to know "the kernel write failed; retry or report" catch this."""

from __future__ import annotations


class KernelError(Exception):
    """A kernel read or write failed."""

    def describe(self) -> str:
        """One line for the log, with what was attempted and what the kernel said."""
        return str(self)
