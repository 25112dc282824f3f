"""How the nftables backend's JSON batches reach the kernel: libnftables in this process,
or the ``nft`` command (under a prefix such as ``ip netns exec``), and the netlink forms
of what can bypass libnftables.

libnftables (Debian's ``python3-nftables``, a ctypes wrapper) takes a JSON batch and
commits it as one netlink transaction.  Before it evaluates any batch it fills its cache
of the table, a cost that grows with the cluster, and its transient heap (which glibc
keeps for the life of the process) grows with the size of a transaction.  So what
:mod:`npc.dataplane.nft_netlink` encodes exactly goes straight over netlink instead, one
transaction all the same: a batch of element changes (a pod event's), the element changes
and chain removals of a full sync's switch, new sets filled before anything refers to them
(:meth:`LibNftables.fill`) and new regular chains whose rules
:mod:`npc.dataplane.nft_expr` encodes (:func:`netlink_chains`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from common.kernel.errors import KernelError
from common.kernel.exec import CommandError, Runner
from npc.dataplane.nft_expr import rule_expressions
from npc.dataplane.nft_netlink import (
    ElementCommand,
    NetlinkRefused,
    NewChain,
    NftNetlink,
    element_commands,
    is_ipv4,
    removals,
)
from npc.render.nft import TABLE
from npc.render.nft_diff import Json, SetFill, chain_commands
from npc.render.nft_patch import ElementPlan, element_changes


class NftError(KernelError):
    """libnftables, the ``nft`` command or the kernel (over netlink) refused a batch;
    carries the input (when it was JSON) and the error text."""

    def __init__(self, message: str, commands: list[Json] | None = None) -> None:
        super().__init__(message)
        self.commands = commands or []


NftRunner = Callable[[list[Json]], Json]
"""Runs one JSON batch as one transaction; returns the parsed JSON output of a lone
``list table`` command (the only listing the backend asks for), else an empty dict.
Raises :class:`NftError` when the batch is refused (nothing of it applied)."""


class Fill(Protocol):
    """Fills sets and maps no rule refers to yet (over netlink), creating the plain
    address sets ``new`` (and the table) first."""

    def __call__(self, sets: list[SetFill], new: Sequence[str] = ()) -> None: ...


Patch = tuple[list[NewChain], list[ElementCommand], list[str]]
"""A pod event's writes, for netlink: chains to create, element commands, chains to
remove (see :meth:`NftNetlink.patch`)."""


class LibNftables:
    """The libnftables seam: one handle and one netlink socket, each serialised on its
    own (a fill may go on while libnftables works).  A batch of element changes only (a
    pod event's) skips libnftables' cache fill and goes straight over netlink, as one
    transaction all the same (see :mod:`npc.dataplane.nft_netlink`), and so does one that
    then removes chains (a full sync's switch, once its new chains are staged)."""

    def __init__(self) -> None:
        import nftables  # Debian's python3-nftables (a ctypes wrapper of libnftables)

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._netlink = NftNetlink()
        self._lock = threading.Lock()
        self._netlink_lock = threading.Lock()

    def __call__(self, commands: list[Json]) -> Json:
        # Element changes, then maybe chains removed (a full sync's switch).
        changes, gone = removals(commands, TABLE)
        elements = element_commands(changes) if changes else []
        if elements is not None and (elements or gone):
            with self._netlink_lock:
                try:
                    self._netlink.patch(TABLE, [], elements, gone)
                except NetlinkRefused as exc:
                    raise NftError(f"nft failed (netlink): {exc}", commands) from None
            return {}
        with self._lock:
            rc, out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nft failed ({rc}): {str(err).strip()}", commands)
        return out if isinstance(out, dict) else {}

    def fill(self, sets: list[SetFill], new: Sequence[str] = ()) -> None:
        """Fill new, still unreferenced sets and maps over netlink, bypassing libnftables:
        its parse tree of tens of thousands of elements would cost tens of megabytes of
        C heap that glibc keeps for the life of the process.  The address sets ``new``
        (and the table) are created first, in the same transaction: libnftables would
        first refill its cache of the whole table."""
        with self._netlink_lock:
            try:
                self._netlink.fill(TABLE, sets, new)
            except NetlinkRefused as exc:
                raise NftError(f"nft failed (netlink fill): {exc}") from None

    def patch(self, patch: Patch) -> None:
        """A pod event's transaction over netlink: new group chains, element changes,
        emptied group chains (libnftables would first refill its cache of the whole
        table, a cost that grows with the cluster)."""
        with self._netlink_lock:
            try:
                self._netlink.patch(TABLE, *patch)
            except NetlinkRefused as exc:
                raise NftError(f"nft failed (netlink): {exc}") from None


class NftCli:
    """The same JSON batches through the ``nft`` command (``nft -j -f -``), optionally under
    a prefix such as ``ip netns exec node0``: one process, one transaction per batch; a
    lone ``list table`` is ``nft -j list table``, whose JSON is returned."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def __call__(self, commands: list[Json]) -> Json:
        if len(commands) == 1 and "table" in commands[0].get("list", {}):
            table = commands[0]["list"]["table"]
            argv = ["nft", "-j", "list", "table", table["family"], table["name"]]
            try:
                out = self.runner(argv)
            except CommandError as exc:
                raise NftError(exc.describe(), commands) from None
            return json.loads(out) if out.strip() else {}
        try:
            self.runner(["nft", "-j", "-f", "-"], json.dumps({"nftables": commands}))
        except CommandError as exc:
            raise NftError(exc.describe(), commands) from None
        return {}


def available() -> bool:
    """libnftables is importable and the kernel answers."""
    try:
        LibNftables()([{"list": {"tables": {}}}])
    except Exception:
        return False
    return True


def netlink_chains(commands: list[Json]) -> tuple[list[NewChain], list[Json]]:
    """The new chains that ``commands`` adds (``add chain``, then ``add rule``), for
    netlink: every chain, with its rules if netlink encodes each of them (see
    :mod:`npc.dataplane.nft_expr`); and the rest of ``commands``, the rules of the other
    chains (in order), for libnftables."""
    rules: dict[str, list[Json]] = {c["add"]["chain"]["name"]: [] for c in commands
                                    if "chain" in c["add"]}
    for c in commands:
        if "rule" in c["add"]:
            rules[c["add"]["rule"]["chain"]].append(c["add"]["rule"])
    out: list[NewChain] = []
    rest: set[str] = set()
    for name, chain_rules in rules.items():
        encoded = [rule_expressions(r) for r in chain_rules]
        if None in encoded:
            rest.add(name)
            out.append(NewChain(name))
        else:
            out.append(NewChain(name, tuple((e, r.get("comment", ""))
                                            for e, r in zip(encoded, chain_rules, strict=True)
                                            if e is not None)))
    return out, [c for c in commands if "rule" in c["add"] and c["add"]["rule"]["chain"] in rest]


def netlink_patch(plan: ElementPlan) -> Patch | None:
    """``plan`` for netlink, in :func:`~npc.render.nft_patch.plan_commands`' order; None
    if an element is not an IPv4 address (netlink here encodes no other)."""
    elements = [ElementCommand(c.delete, "inet", TABLE, c.name, c.elements)
                for c in element_changes(plan)]
    if not all(is_ipv4(key) for c in elements for key, _ in c.elements):
        return None
    creates, rest = netlink_chains(chain_commands(plan.creates))
    assert not rest  # group chains only jump
    return creates, elements, list(plan.gone)
