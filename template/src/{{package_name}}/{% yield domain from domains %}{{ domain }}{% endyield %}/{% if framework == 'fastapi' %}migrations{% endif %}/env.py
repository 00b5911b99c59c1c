"""Alembic environment of one domain; ``migrate.py`` passes the connection and metadata."""

from alembic import context

if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `migrate` instead")

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=context.config.attributes["target_metadata"],
)
with context.begin_transaction():
    context.run_migrations()
