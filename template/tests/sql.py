"""Plain SQL on the test databases, through psycopg: what a test checks is in the tables,
whichever ORM wrote it.

Set TEST_POSTGRES_URL to an account that may create databases
(default: postgresql://postgres@127.0.0.1:5432/postgres).
"""

import os
import urllib.parse

import psycopg

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    """The admin account's URL, on database ``name``."""
    return urllib.parse.urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()


def administer(*statements: str) -> None:
    """Run statements that cannot run in a transaction (CREATE / DROP DATABASE)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def _domain_url(domain: str) -> str:
    return os.environ[f"{domain.upper()}_DATABASE_URL"]


def execute(domain: str, statement: str, parameters: dict | None = None) -> None:
    """One statement on the domain's database, committed."""
    with psycopg.connect(_domain_url(domain)) as connection:
        connection.execute(statement, parameters)


def scalar(domain: str, query: str, parameters: dict | None = None):
    with psycopg.connect(_domain_url(domain)) as connection:
        return connection.execute(query, parameters).fetchone()[0]


def column(domain: str, query: str, parameters: dict | None = None) -> list:
    with psycopg.connect(_domain_url(domain)) as connection:
        return [row[0] for row in connection.execute(query, parameters)]
