"""`mdp migrate`: Alembic upgrades and downgrades with the project's settings; errors in a line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from marketdata.errors import MarketDataError, TransientError
from marketdata.rollups import reconcile_database
from marketdata.settings import Settings


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy's spelling of a libpq URL, with the psycopg 3 driver."""
    scheme, sep, rest = database_url.partition("://")
    return (
        f"postgresql+psycopg{sep}{rest}" if scheme in {"postgres", "postgresql"} else database_url
    )


def alembic_config(settings: Settings) -> Config:
    config = Config()
    migrations = Path(str(resources.files("migrations")))
    config.set_main_option("script_location", str(migrations))
    config.attributes["settings"] = settings
    return config


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except sqlalchemy.exc.OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise TransientError(f"cannot connect to PostgreSQL: {first}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise MarketDataError(f"migration failed: {first}") from None


def upgrade(settings: Settings, revision: str = "head") -> None:
    with _database_errors():
        command.upgrade(alembic_config(settings), revision)
    if revision == "head":  # the rollups MDP_ROLLUP_INTERVALS lists now (marketdata/rollups.py)
        reconcile_database(settings.database, settings.rollup_intervals)


def downgrade(settings: Settings, revision: str) -> None:
    with _database_errors():
        command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings) -> str | None:
    with _database_errors():
        engine = create_engine(sqlalchemy_url(settings.database), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        finally:
            engine.dispose()
