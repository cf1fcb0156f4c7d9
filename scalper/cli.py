"""The `scalper` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from config.settings import ConfigError, Settings, load_settings


def _cmd_fsm(args: argparse.Namespace) -> int:
    from statemachines.lifecycle import build_machine, edges, mermaid

    if args.mermaid:
        sys.stdout.write(mermaid())
    else:
        for src, dst, trigger in edges(build_machine()):
            print(f"{src:<11} --{trigger}--> {dst}")
    return 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2, sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fsm = sub.add_parser("fsm", help="the position lifecycle (transition table or Mermaid diagram)")
    fsm.add_argument("--mermaid", action="store_true", help="print a Mermaid stateDiagram of the machine")
    cfg = sub.add_parser("config", help="configuration")
    cfg.add_argument("action", choices=["show"], help="show: the effective configuration, secrets masked")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fsm":
        return _cmd_fsm(args)
    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    if args.command == "config":
        return _cmd_config(args, settings)
    return 2
