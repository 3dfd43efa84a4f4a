"""`zk`: the command line of zk_pipelines.

Each subcommand is a small function here that parses arguments and calls into the package; errors a
person can act on are printed as one line (no traceback) with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from zk_pipelines.clients.http import ApiError
from zk_pipelines.config import ConfigurationError


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from zk_pipelines.sandbox.launcher import run_sandboxes

    return run_sandboxes(seed=args.seed, scale=args.scale, host=args.host,
                         kaseya_port=args.kaseya_port, zomentum_port=args.zomentum_port)


def _cmd_check(args: argparse.Namespace) -> int:
    from zk_pipelines.connectivity import run_check

    return run_check(os.environ, out=sys.stdout)


def _cmd_settings(args: argparse.Namespace) -> int:
    from zk_pipelines.settings_commands import run_settings_command

    return run_settings_command(args.action, os.environ, out=sys.stdout)


def _cmd_demo(args: argparse.Namespace) -> int:
    from zk_pipelines.demo import run_demo

    return run_demo(seed=args.seed, scale=args.scale, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk", description="Kaseya BMS <-> Zomentum sync")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sandbox", help="run the Kaseya and Zomentum sandboxes until interrupted")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", choices=["small", "medium", "large"], default="medium")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--kaseya-port", type=int, default=8601)
    p.add_argument("--zomentum-port", type=int, default=8602)
    p.set_defaults(func=_cmd_sandbox)

    p = sub.add_parser("check", help="authenticate and make one read per endpoint the pipeline uses")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("settings", help="check the settings file against the live systems, or show it resolved")
    p.add_argument("action", choices=["check", "show"])
    p.set_defaults(func=_cmd_settings)

    p = sub.add_parser("demo", help="start the sandboxes and run the sync end to end")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", choices=["small", "medium", "large"], default="medium")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ApiError, ConfigurationError) as exc:
        print(f"zk {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
