"""Choosing the kernel backend: ``iptables``, ``nftables`` or ``auto``.

``auto`` picks nftables when libnftables and the kernel support it and nothing else is
configured; it stays with iptables when an iptables flavour is set (``IPTABLES_BACKEND``),
when weave-npc's iptables chains already exist (a node upgraded from the Go original or
from iptables mode), or when weaver's iptables hooks are installed (weaver was started
with ``--expect-npc`` expecting iptables).  The router and npc agree on the mode through
the DaemonSet: both containers get the same ``NPC_BACKEND`` environment variable (npc's
``--backend`` defaults to it); a router that sees ``NPC_BACKEND=nftables`` does not
install its iptables hooks, because the nftables table hooks into netfilter by itself.
"""

from __future__ import annotations

from common.kernel.exec import CommandError, Runner, SubprocessRunner
from npc.compile.compiler import Options
from npc.dataplane.backend import Backend
from npc.dataplane.ipset_netlink import IpsetNetlink
from npc.dataplane.iptables import IptablesBackend, detect_mode
from npc.render.nft import TABLE

BACKENDS = ("iptables", "nftables", "auto")


def _iptables_in_use(runner: Runner) -> bool:
    for tool in ("iptables-nft-save", "iptables-legacy-save"):
        try:
            text = runner([tool, "-t", "filter"])
        except (CommandError, OSError):
            continue
        if "WEAVE-NPC" in text:
            return True
    return False


def _nftables_in_use(runner: Runner) -> bool:
    try:
        return "table inet weave-npc" in runner(["nft", "list", "tables"])
    except (CommandError, OSError):
        return False


def in_use(name: str, runner: Runner) -> str:
    """The backend whose state this network namespace holds ("nftables" when npc's table
    exists, else "iptables" when its chains do), else what ``name`` chooses."""
    if name != "auto":
        return name
    if _nftables_in_use(runner):
        return "nftables"
    return "iptables" if _iptables_in_use(runner) else choose(name, runner)


def choose(name: str, runner: Runner, iptables_mode: str | None = None) -> str:
    """The backend to use: "iptables" or "nftables" (``auto``: see the module's
    docstring; an iptables flavour given explicitly means iptables)."""
    from npc.dataplane import nft_runner

    if name != "auto":
        return name
    if iptables_mode or _iptables_in_use(runner):
        return "iptables"
    return "nftables" if nft_runner.available() else "iptables"


def make_backend(name: str, runner: Runner, options: Options, *,
                 install_hooks: bool = False, iptables_mode: str | None = None) -> Backend:
    """The backend ``name`` chooses (see :func:`choose`).  The iptables backend's own
    settings: ``install_hooks`` (also install weaver's hooks into its chains; the nftables
    table hooks into netfilter by itself) and ``iptables_mode`` (nft or legacy; None:
    detect)."""
    chosen = choose(name, runner, iptables_mode)
    # In-process kernel access (libnftables, ipset netlink) for this network namespace;
    # the commands otherwise (a runner with a prefix targets another namespace).
    in_process = isinstance(runner, SubprocessRunner) and not runner.prefix
    if chosen == "nftables":
        from npc.dataplane.nft_runner import LibNftables, NftCli
        from npc.dataplane.nftables import NftablesBackend

        nft = LibNftables() if in_process else NftCli(runner)
        return NftablesBackend(nft, options=options, listing=lambda: runner(
            ["nft", "list", "table", "inet", TABLE]))
    mode = detect_mode(runner, iptables_mode)
    writer = IpsetNetlink() if in_process else None
    return IptablesBackend(runner, mode=mode, list_size=options.max_list_size,
                           member_writer=writer, install_hooks=install_hooks)
