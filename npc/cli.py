"""Command line: ``npc debug``, ``npc apply``, ``npc demo`` (``weave-npc`` is the same)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.service.settings import (
    Flag,
    Resolved,
    SettingsError,
    add_flags,
    go_booleans,
    resolve,
)
from npc.compile.compiler import Options, compile_ruleset
from npc.controller.settings import (
    BACKEND,
    BACKENDS,
    INSTALL_HOOKS,
    IPTABLES_MODE,
    POLICY_FLAGS,
    policy_options,
)
from npc.model.load import Loaded, load_files


def _add_policy_options(p: argparse.ArgumentParser, files_required: bool = True) -> None:
    p.add_argument("-f", "--filename", dest="files", action="append",
                   required=files_required,
                   metavar="FILE", help="YAML/JSON file or directory (repeatable)")
    add_flags(p, POLICY_FLAGS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npc", description=(
        "Weave Net network policy controller: compiles Kubernetes NetworkPolicies into "
        "ipsets and iptables chains on the weave bridge."))
    sub = parser.add_subparsers(dest="command")
    debug = sub.add_parser("debug", help=(
        "with -f: print the ruleset that objects in files compile to; without: show this "
        "node's kernel state mapped to policies, and flag differences"))
    _add_policy_options(debug, files_required=False)
    debug.add_argument("--format", choices=("text", "json", "restore"), default="text")
    debug.add_argument("--kubeconfig", default=None,
                       help="for the live view: where to read the desired state from")
    debug.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="for the live view and explain: which kernel state to read "
                            "(default auto: the one this node holds)")
    debug.add_argument("--live", action="store_true",
                       help="show the kernel state even when -f gives the desired state")
    debug.add_argument("what", nargs="*", metavar="explain SRC DST PORT[/PROTO]",
                       help="explain the verdict for one connection (pods as ns/name or IP)")
    apply = sub.add_parser("apply", help="apply the objects in files to this network "
                           "namespace's kernel once, and exit")
    _add_policy_options(apply)
    add_flags(apply, (BACKEND, INSTALL_HOOKS, IPTABLES_MODE))
    sub.add_parser("run", add_help=False, help="run as the weave-npc controller (the default "
                   "when started as weave-npc); see 'npc run --help'")
    demo = sub.add_parser("demo", help="build a lab of network namespaces and show policies "
                          "being enforced with real traffic")
    demo.add_argument("--keep-going", action="store_true", help=argparse.SUPPRESS)
    return parser


def _resolved(args: argparse.Namespace, flags: Sequence[Flag[Any]]) -> Resolved:
    resolved = resolve(flags, args, os.environ)
    if resolved.problems:
        raise SettingsError(resolved.problems)
    return resolved


def _options(args: argparse.Namespace) -> Options:
    return policy_options(_resolved(args, POLICY_FLAGS))


def _report(loaded: Loaded) -> None:
    for problem in loaded.problems:
        level = "error" if problem.fatal else "warning"
        print(f"npc: {level}: {problem}", file=sys.stderr)


def cmd_debug(args: argparse.Namespace) -> int:
    from npc.render import dump

    if args.what:
        from npc.controller.explain import cmd_explain

        return cmd_explain(args.what, args.files, args.kubeconfig, _options(args),
                           args.backend)
    if args.live or not args.files:
        from npc.controller.inspect import live_debug

        return live_debug(args.files, args.kubeconfig, _options(args), args.backend)
    loaded = load_files(args.files)
    _report(loaded)
    ruleset = compile_ruleset(loaded.state(), _options(args))
    if args.format == "json":
        sys.stdout.write(dump.to_json(ruleset))
    elif args.format == "restore":
        sys.stdout.write(dump.to_restore(ruleset, _options(args).max_list_size))
    else:
        sys.stdout.write(dump.to_text(ruleset))
    return 1 if loaded.failed else 0


def cmd_apply(args: argparse.Namespace) -> int:
    from common.kernel.exec import SubprocessRunner
    from npc.dataplane.backend import BackendError
    from npc.dataplane.select import make_backend

    loaded = load_files(args.files)
    _report(loaded)
    ruleset = compile_ruleset(loaded.state(), _options(args))
    for problem in ruleset.problems:
        print(f"npc: enforced fail-closed: {problem}", file=sys.stderr)
    runner = SubprocessRunner()
    chosen = _resolved(args, (BACKEND, INSTALL_HOOKS, IPTABLES_MODE)).values
    try:
        backend = make_backend(chosen["backend"], runner, _options(args),
                               install_hooks=chosen["install_hooks"],
                               iptables_mode=chosen["iptables_mode"])
    except (ValueError, BackendError) as exc:
        print(f"npc: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = backend.apply(ruleset)
    except BackendError as exc:
        print(f"npc: error: applying failed: {exc}", file=sys.stderr)
        return 2
    changed = ", ".join(report.chains_rewritten) or "none"
    label = backend.description.removeprefix("iptables-").split(",")[0].split(" ")[0]
    print(f"npc: applied ({label}): {len(ruleset.sets)} sets, "
          f"{sum(len(c.rules) for c in ruleset.chains)} rules; ipset lines written: "
          f"{report.ipset_lines}; chains rewritten: {changed}; sets destroyed: "
          f"{len(report.sets_destroyed)}; hooks installed: {report.hooks_installed}")
    return 1 if loaded.failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from npc.demo import run_demo

    return run_demo()


def cmd_run(argv: Sequence[str]) -> int:
    from npc.controller import main as controller
    from npc.controller.settings import from_environment

    try:
        settings = from_environment(argv)
    except SettingsError as exc:
        print(f"weave-npc: {exc}", file=sys.stderr)
        return 2
    return controller.run(settings)


SUBCOMMANDS = ("debug", "apply", "demo", "run")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return cmd_run(argv[1:])
    if Path(sys.argv[0]).name == "weave-npc" and (not argv or argv[0] not in SUBCOMMANDS):
        return cmd_run(argv)  # the drop-in: weave-npc [flags] runs the controller
    parser = build_parser()
    args = parser.parse_args(go_booleans(argv, (*POLICY_FLAGS, INSTALL_HOOKS)))
    handlers = {"debug": cmd_debug, "apply": cmd_apply, "demo": cmd_demo}
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except SettingsError as exc:
        print(f"npc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
