"""`python -m workers …`: the launcher, database setup and API keys (operator commands register here too)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from api.keys import generate_key
from models.core import ApiKey, Workspace
from workers.db import session_scope
from workers.settings import get_settings


class CommandError(Exception):
    """A clear message for the operator; the command exits non-zero."""


def cmd_run(_: argparse.Namespace) -> int:
    from workers.launcher import main

    return main()


def cmd_migrate(_: argparse.Namespace) -> int:
    from workers.database import ensure_database, migrate

    url = get_settings().database_url
    if ensure_database(url):
        print("created the database")
    migrate(url)
    print("migrations applied")
    return 0


def cmd_create_api_key(args: argparse.Namespace) -> int:
    key = generate_key()
    with session_scope() as session:
        session.execute(
            pg_insert(Workspace).values(name=args.workspace).on_conflict_do_nothing(index_elements=["name"])
        )
        workspace_id = session.execute(select(Workspace.id).where(Workspace.name == args.workspace)).scalar_one()
        session.execute(
            insert(ApiKey).values(
                workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash, name=args.name
            )
        )
    print(f"workspace {args.workspace} (id {workspace_id}); key prefix {key.prefix}; shown once, store it now:")
    print(key.plaintext)
    return 0


def cmd_revoke_api_key(args: argparse.Namespace) -> int:
    with session_scope() as session:
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == args.prefix, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(ApiKey.id)
        ).scalar_one_or_none()
    if revoked is None:
        raise CommandError(f"no active API key with prefix {args.prefix!r}")
    print(f"revoked key {args.prefix}")
    return 0


Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
EXTRA_COMMANDS: list[Registrar] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Artisan Jobs: launcher and operator CLI")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start API, workers, beat and Flower as one supervised group (make run)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("migrate", help="create the database if missing and apply every migration")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("create-api-key", help="create a workspace's API key (the workspace too, if needed)")
    p.add_argument("--workspace", required=True, help="workspace name")
    p.add_argument("--name", default=None, help="a label for the key")
    p.set_defaults(func=cmd_create_api_key)

    p = sub.add_parser("revoke-api-key", help="revoke an API key by its prefix")
    p.add_argument("prefix", help="the key's prefix (the part after 'ak_')")
    p.set_defaults(func=cmd_revoke_api_key)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


from workers import ops_cli  # noqa: E402, F401 - registers the operator commands (issue 8)
