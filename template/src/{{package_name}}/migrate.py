"""Alembic migrations, one independent history per domain database.

``migrate`` with no arguments brings every domain to head; the sub-commands work on one
domain at a time.
"""

import argparse
import sys
from functools import cache
from importlib import import_module
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from .db import database_faults
from .faults import entry_point
from .orm import engine
from .settings import DOMAINS, get_settings

PACKAGE_DIR = Path(__file__).resolve().parent


def alembic_config(domain: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / domain / "migrations"))
    models = import_module(f"{__package__}.{domain}.models")
    config.attributes["target_metadata"] = models.Base.metadata
    return config


def head_revisions(domain: str) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(domain)).get_heads())


def current_revisions(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


@cache
def _heads(domain: str) -> frozenset[str]:
    return frozenset(head_revisions(domain))


def behind(domain: str) -> str | None:
    """What keeps the domain's database from its head revision; None when it is at head.
    Raises when the database cannot be reached. The heads are read once per process."""
    with engine(domain).connect() as connection:
        current = current_revisions(connection)
    if current == _heads(domain):
        return None
    return f"at {sorted(current) or 'no revision'}, head is {sorted(_heads(domain))}"


def upgrade(domain: str, revision: str = "head") -> None:
    _run(domain, command.upgrade, revision)


def downgrade(domain: str, revision: str) -> None:
    _run(domain, command.downgrade, revision)


def upgrade_all() -> None:
    for domain in DOMAINS:
        print(f"migrating {domain} to head", flush=True)
        upgrade(domain)


def _run(domain: str, operation, *args, **kwargs) -> None:
    config = alembic_config(domain)
    with database_faults(domain), engine(domain).begin() as connection:
        config.attributes["connection"] = connection
        operation(config, *args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrate", description="Migrate the domain databases (default: every domain to head)."
    )
    commands = parser.add_subparsers(dest="command")
    for name, default in (("upgrade", "head"), ("downgrade", None)):
        sub = commands.add_parser(name, help=f"{name} one domain")
        sub.add_argument("domain", choices=DOMAINS)
        sub.add_argument("revision", default=default, nargs="?" if default else None)
    revision = commands.add_parser("revision", help="create a migration for one domain")
    revision.add_argument("domain", choices=DOMAINS)
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true")
    current = commands.add_parser("current", help="show each domain's revision")
    current.add_argument("domain", choices=DOMAINS, nargs="?")
    return parser


@entry_point("migrate")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    get_settings()
    if args.command is None:
        upgrade_all()
    elif args.command == "upgrade":
        upgrade(args.domain, args.revision)
    elif args.command == "downgrade":
        downgrade(args.domain, args.revision)
    elif args.command == "revision":
        _run(args.domain, command.revision, message=args.message, autogenerate=args.autogenerate)
    else:
        for domain in [args.domain] if args.domain else DOMAINS:
            with database_faults(domain), engine(domain).connect() as connection:
                current = ", ".join(sorted(current_revisions(connection))) or "empty"
            print(f"{domain}: {current} (head: {', '.join(sorted(head_revisions(domain)))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
