"""Network-namespace plumbing for the lab: per-thread setns(2), iproute2 batches, cleanup.

Kernel background
-----------------
A network namespace is a kernel object; ``ip netns add NAME`` keeps it alive by
bind-mounting ``/proc/<pid>/ns/net`` onto ``/run/netns/NAME``.  Opening that file
yields an fd which ``setns(fd, CLONE_NEWNET)`` accepts.  Unlike mount or user
namespaces, the *network* namespace is a per-thread attribute (``task->nsproxy``),
so a multi-threaded process may move one thread into another namespace while the
others stay where they are.  Two facts make the lab cheap:

* a socket is bound for life to the namespace of the thread that created it, so a
  thread can hop into a pod's namespace, call ``socket()``, and hop back; the
  socket keeps working in the pod's namespace from any thread;
* ``/proc/sys/net`` resolves against the *calling thread's* namespace, so a thread
  inside a namespace can set that namespace's sysctls without forking.

Deleting ``/run/netns/NAME`` drops the last reference only if nothing else (open
fds, sockets, processes) holds the namespace; when the namespace finally dies the
kernel destroys its interfaces, and destroying one veth end destroys its peer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace referred to by ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def open_netns(name: str) -> int:
    """Open ``/run/netns/<name>`` read-only; the fd pins the namespace while open."""
    return os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def in_netns(fd: int) -> Iterator[None]:
    """Run the body with only the *calling thread* inside namespace ``fd``.

    The thread's original namespace is taken from ``/proc/thread-self/ns/net``
    (not ``/proc/self``, which names the thread-group leader).  If switching back
    fails the thread would silently stay in the pod namespace, which would poison
    a pooled worker thread, so that failure is raised rather than swallowed.
    """
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
            yield
        finally:
            _setns(orig)  # also safe if the first setns never happened
    finally:
        os.close(orig)


def write_sysctls(fd: int, values: dict[str, str]) -> None:
    """Set sysctls (dotted names) inside namespace ``fd`` from this thread."""
    with in_netns(fd):
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, "w", encoding="ascii") as fh:
                fh.write(value)


def list_netns() -> list[str]:
    """Names of all named network namespaces (entries of ``/run/netns``)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []
