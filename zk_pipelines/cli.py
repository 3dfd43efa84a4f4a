"""`zk`: the command line of zk_pipelines.

Each subcommand is a small function here that parses arguments and calls into the package; errors a
person can act on are printed as one line (no traceback) with exit status 1. Any other error is printed as
one line too, with the file the full traceback was written to (`main`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from zk_pipelines.audit.ledger import LedgerUnavailable
from zk_pipelines.audit.query import HISTORY_KINDS, SelectionError
from zk_pipelines.clients.http import ApiError
from zk_pipelines.config import ENVIRONMENT_VARIABLES, SECRET_VARIABLES, ConfigurationError, check_environment_text
from zk_pipelines.secrets import redact
from zk_pipelines.storage.database import DatabaseUnusable
from zk_pipelines.storage.state_store import StateStoreError


def _scale_name(value: str) -> str:
    """`zk sandbox --scale` and `zk demo --scale`: one of the sandbox's world sizes. Looked up when one of those
    commands is parsed, so that the rest of `zk` runs on an install without the sandboxes' extra."""
    from zk_pipelines.sandbox.world import SCALES

    if value not in SCALES:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(SCALES)})")
    return value


def _tenant_count(value: str | None) -> int:
    """`zk sandbox --tenants`: absent is 1; anything but a whole number in range is a one-line error."""
    from zk_pipelines.sandbox.tenancy import MAX_TENANTS

    if value is None:
        return 1
    if not (value.strip().isascii() and value.strip().isdigit()) or not 1 <= int(value) <= MAX_TENANTS:
        raise ConfigurationError(f"--tenants takes a whole number from 1 to {MAX_TENANTS}, not {value!r}")
    return int(value)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from zk_pipelines.sandbox.launcher import run_sandboxes

    return run_sandboxes(seed=args.seed, scale=args.scale, host=args.host,
                         kaseya_port=args.kaseya_port, zomentum_port=args.zomentum_port,
                         tenants=_tenant_count(args.tenants), registry=args.registry)


def _cmd_check(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.check import run_check

    return run_check(os.environ, out=sys.stdout, tenant=args.tenant)


def _cmd_settings(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.settings import run_settings_command

    return run_settings_command(args.action, os.environ, out=sys.stdout, tenant=args.tenant)


def _cmd_tenants(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.tenants import run_tenants_command

    return run_tenants_command(os.environ, out=sys.stdout, check=args.check)


def _cmd_push(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.push import run_push_command

    return run_push_command(args.document_id, args.assignments, dry_run=args.dry_run, take_over=args.take_over,
                            env=os.environ, out=sys.stdout, err=sys.stderr, tenant=args.tenant)


def _cmd_sync(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.sync import run_sync

    return run_sync(hour=args.hour, first=args.first, last=args.last, whole_history=args.whole_history,
                    out=sys.stdout, tenant=args.tenant)


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.reconcile import run_reconcile

    return run_reconcile(os.environ, entities=args.entity, repair=args.repair, dry_run=args.dry_run, out=sys.stdout,
                         tenant=args.tenant)


def _cmd_state(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.state import run_state_command

    if args.action == "rebuild":
        from zk_pipelines.commands.state_rebuild import run_state_rebuild

        return run_state_rebuild(os.environ, out=sys.stdout, err=sys.stderr, tenant=args.tenant)

    if args.action in ("export", "import") and args.directory is None:
        raise ConfigurationError(f"zk state {args.action} needs a directory")
    return run_state_command(args.action, args.directory, os.environ, sys.stdout, tenant=args.tenant)


def _cmd_demo(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.demo import run_demo

    return run_demo(seed=args.seed, scale=args.scale, out=sys.stdout, workdir=args.workdir)


def _cmd_audit(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.audit import run_audit

    return run_audit(os.environ, entity=args.entity, status=args.status, since=args.since, run=args.run,
                     output_format=args.format, out=sys.stdout, err=sys.stderr, tenant=args.tenant)


def _cmd_history(args: argparse.Namespace) -> int:
    from zk_pipelines.commands.history import run_history

    return run_history(os.environ, args.kind, args.id, out=sys.stdout, err=sys.stderr, tenant=args.tenant)


def port_number(text: str) -> int:
    """A TCP port for `zk sandbox` (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1 to 65535 (0: any free port)")
    return port


def tenant_option(parser: argparse.ArgumentParser) -> None:
    """`--tenant NAME`, for every subcommand that acts on one tenant's systems or state (commands/tenant_choice.py)."""
    parser.add_argument("--tenant", metavar="NAME",
                        help="the tenant of the registry ZK_TENANTS names to act on (needed when it lists several); "
                             "without a registry, the environment's one tenant")


def _subcommand(sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
                summary: str, *, per_tenant: bool = True) -> argparse.ArgumentParser:
    """The parser of `zk NAME` (`summary`: its line in `zk --help`), run by `handler`; a subcommand that acts on
    one tenant's systems or state takes `--tenant`."""
    parser = sub.add_parser(name, help=summary)
    parser.set_defaults(func=handler)
    if per_tenant:
        tenant_option(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk", description="Kaseya BMS <-> Zomentum sync")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _subcommand(sub, "sandbox", _cmd_sandbox, "run the Kaseya and Zomentum sandboxes until interrupted",
                    per_tenant=False)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=_scale_name, default="medium", help="the world's size (small, medium, ...)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--kaseya-port", type=port_number, default=8601)
    p.add_argument("--zomentum-port", type=port_number, default=8602)
    p.add_argument("--tenants", metavar="N",
                   help="serve N MSP tenants (1 to 200; each but the first seeded on first use) and, past 1, "
                        "write a tenant registry and print its secrets' export lines")
    p.add_argument("--registry", type=Path, metavar="PATH",
                   help="where the tenant registry goes (default tenants.yaml here)")

    _subcommand(sub, "check", _cmd_check, "authenticate and make one read per endpoint the pipeline uses")

    p = _subcommand(sub, "settings", _cmd_settings,
                    "check the settings file against the live systems, or show it resolved")
    p.add_argument("action", choices=["check", "show"])

    p = _subcommand(sub, "tenants", _cmd_tenants, "the tenants this deployment serves (ZK_TENANTS, else the "
                    "environment's one) and where each value comes from", per_tenant=False)
    p.add_argument("--check", action="store_true",
                   help="read every tenant's values and settings file here; exit 1 if any cannot be used")

    p = _subcommand(sub, "push", _cmd_push,
                    "push one Zomentum document to Kaseya (opportunity, quote, lines), exactly once")
    p.add_argument("document_id", help="the Zomentum document id")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE",
                   help="override an opportunity or quote field (repeatable), e.g. --set close_date=2026-12-31")
    p.add_argument("--dry-run", action="store_true",
                   help="print every Kaseya request the push would send (method, path, body); send nothing")
    p.add_argument("--take-over", action="store_true",
                   help="take the document over from a `zk push` that died holding it (its process is checked to "
                        "be gone, on this machine)")

    p = _subcommand(sub, "sync", _cmd_sync, "one run of the hourly sync here (default: the last complete hour; a "
                    "tenant's first run syncs its whole history)")
    p.add_argument("--hour", help="the hour to sync, YYYY-MM-DD-HH:00 (UTC)")
    p.add_argument("--from", dest="first", help="first hour of a range synced as one run (a backfill)")
    p.add_argument("--to", dest="last", help="last hour of the range")
    p.add_argument("--whole-history", action="store_true",
                   help="extract everything Kaseya holds again (a full re-sync); only what changed is written")

    p = _subcommand(sub, "reconcile", _cmd_reconcile,
                    "compare Kaseya, Zomentum and the id map whole: deletions, drift, orphans")
    p.add_argument("--entity", action="append", metavar="ENTITY",
                   help="clients, client_users, opportunities or items (repeatable; default all)")
    p.add_argument("--repair", action="store_true", help="settle what the mode allows (see README, Reconciliation)")
    p.add_argument("--dry-run", action="store_true",
                   help="print exactly the Zomentum requests --repair would send; send and write nothing")

    p = _subcommand(sub, "demo", _cmd_demo, "start the sandboxes and run the sync end to end", per_tenant=False)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=_scale_name, default="medium_5y", help="the world's size (small_recent, ...)")
    p.add_argument("--workdir", type=Path, default=None, help="where the demo's DuckDB file goes (default .demo/)")

    p = _subcommand(sub, "audit", _cmd_audit,
                    "the audit log: every outcome per record, from the ledger (ZK_DUCKDB_PATH)")
    p.add_argument("--entity", help="clients, client_users (contacts), opportunities, items (products), documents...")
    p.add_argument("--status", choices=["success", "error"], help="error: failed writes and validation rejects")
    p.add_argument("--since", help="a duration back from now (30m, 2h, 3d, 1w) or an ISO date or date-time (UTC)")
    p.add_argument("--run", help="a run id, or its first characters as the Dagster UI shows them")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = _subcommand(sub, "state", _cmd_state, "the tenant's durable state store: migrate, status, export or "
                    "import (PostgreSQL with ZK_STATE_URL, else the DuckDB file); rebuild restores a lost id map "
                    "from the Kaseya links Zomentum's records carry and the push's markers in Kaseya")
    p.add_argument("action", choices=["migrate", "status", "export", "import", "rebuild"])
    p.add_argument("directory", nargs="?", type=Path, help="export: where to write; import: what to load")

    p = _subcommand(sub, "history", _cmd_history, "one record's trail between Kaseya and Zomentum, oldest first")
    p.add_argument("kind", choices=list(HISTORY_KINDS))
    p.add_argument("id", help="the record's Kaseya id or Zomentum id")
    return parser


# Errors whose message names what to fix (a variable, a file, a key, a value): printed as they are.
EXPECTED_ERRORS = (ApiError, ConfigurationError, DatabaseUnusable, LedgerUnavailable, SelectionError,
                   StateStoreError, OSError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_environment_text(os.environ, ENVIRONMENT_VARIABLES)
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"zk {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line here, the whole story in a file
        print(f"zk {args.command}: unexpected error ({_one_line(exc)}); the full traceback is in "
              f"{_write_traceback(args.command)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, OSError) or not exc.strerror else \
        f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__
    return redact(text if isinstance(exc, EXPECTED_ERRORS) else f"{type(exc).__name__}: {text}", _secrets())


def _secrets() -> list[str | None]:
    return [os.environ.get(name) for name in SECRET_VARIABLES]


def _write_traceback(command: str) -> str:
    """The current exception's traceback, secrets masked, in a file only this user can read."""
    path = Path(tempfile.gettempdir()) / f"zk-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8", errors="backslashreplace") as file:
        file.write(redact(traceback.format_exc(), _secrets()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
