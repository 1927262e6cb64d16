"""Alembic environment: one connection through psycopg 3, settings from the entry point.

`mdp migrate` passes its Settings in ``config.attributes["settings"]``; plain ``alembic`` runs
read them from the environment here, this file being that command's entry point.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from marketdata.migrate import sqlalchemy_url
from marketdata.settings import Settings

config = context.config
settings: Settings = config.attributes.get("settings") or Settings.from_env()
config.attributes["settings"] = settings
url = sqlalchemy_url(settings.database)


def run_offline() -> None:
    # `alembic upgrade --sql`: no server to ask, so the plain-PostgreSQL path is printed.
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
