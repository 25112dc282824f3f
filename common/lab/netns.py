"""Lab plumbing over network namespaces: iproute2 batches, stale-lab cleanup, scratch
namespaces (entering a namespace is :mod:`common.kernel.netns`)."""


from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence

from common.kernel.netns import list_netns


class LabError(RuntimeError):
    """A lab setup/teardown step failed (message includes the command's stderr)."""


def run(argv: Sequence[str], input: str | None = None, check: bool = True) -> str:
    """Run a command, returning stdout; raise :class:`LabError` with stderr on failure."""
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip_batch_argv(netns: str | None, force: bool = False) -> list[str]:
    """argv for ``ip [-n NS] [-force] -batch -`` (one process for many commands).

    ``ip -n NS`` switches into the namespace once, before reading the batch, so a
    single fork configures a whole namespace.
    """
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    return [*argv, "-batch", "-"]


def ip_batch(netns: str | None, lines: Iterable[str], force: bool = False) -> None:
    """Run iproute2 commands (without the leading ``ip``) as one batch."""
    text = "".join(line + "\n" for line in lines)
    if text:
        run(ip_batch_argv(netns, force), input=text)


def ip_batches_parallel(batches: dict[str | None, list[str]]) -> None:
    """Run several independent per-namespace batches concurrently (one fork each)."""
    procs: list[tuple[str | None, subprocess.Popen[str]]] = []
    for ns, lines in batches.items():
        proc = subprocess.Popen(
            ip_batch_argv(ns),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((ns, proc))
        assert proc.stdin is not None
        proc.stdin.write("".join(line + "\n" for line in lines))
        proc.stdin.close()
    errors: list[str] = []
    for ns, proc in procs:
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
        if proc.wait() != 0:
            errors.append(f"ip -n {ns} -batch: {err.strip()}")
    if errors:
        raise LabError("; ".join(errors))


def delete_netns(names: Iterable[str]) -> None:
    """Delete namespaces in one ``ip -force -batch`` (missing ones are ignored)."""
    existing = set(list_netns())
    todo = [n for n in names if n in existing]
    if todo:
        run(
            ip_batch_argv(None, force=True),
            input="".join(f"netns del {n}\n" for n in todo),
            check=False,
        )


_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{1,24}$")


def check_prefix(prefix: str) -> str:
    """Validate a lab prefix: letters, digits and ``_`` only.

    Dashes are reserved as the separator in ``<prefix>-n0``/``<prefix>-p-...``
    so that :func:`cleanup_stale` for one prefix can never match another lab's
    namespaces (``a`` vs ``a-b`` would otherwise be ambiguous).
    """
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"lab prefix {prefix!r} must match {_PREFIX_RE.pattern}")
    return prefix


def stale_names(prefix: str) -> list[str]:
    """Namespaces that a lab with ``prefix`` may have created."""
    pat = re.compile(rf"^{re.escape(check_prefix(prefix))}-(fab|n\d+|p-.+)$")
    return [n for n in list_netns() if pat.match(n)]


def cleanup_stale(prefix: str) -> list[str]:
    """Delete leftovers of a crashed lab with this prefix; returns the names deleted."""
    names = stale_names(prefix)
    delete_netns(names)
    return names


@contextlib.contextmanager
def scratch_netns(prefix: str) -> Iterator[str]:
    """A fresh, empty network namespace named ``<prefix>-<random>``, deleted afterwards
    (with everything in it: links, rules, sets), also on failure."""
    import uuid

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)

