"""Alembic environment: one URL precedence shared with the CLI, batch mode on SQLite."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from mlpred_cli.config import resolve_database_url
from mlpred_cli.store.database import create_engine, normalize_url
from mlpred_cli.store.tables import Base

config = context.config
target_metadata = Base.metadata


#: Tables mlpred makes outside migrations: the day partitions of ml_predictions.
_PARTITION_PREFIXES = ("ml_predictions_p2", "ml_predictions_default")


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave out of autogenerate (and ``alembic check``) what the partitioned layout adds:
    the day partitions, their indexes, and the unique constraint that gains ``datetime``."""
    if type_ == "table" and name is not None and name.startswith(_PARTITION_PREFIXES):
        return False
    table = getattr(obj, "table", None)
    if type_ == "index" and table is not None and table.name.startswith(_PARTITION_PREFIXES):
        return False
    return not (type_ == "unique_constraint" and name == "uq_ml_predictions_prediction_id")


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include_object,
    )


def run_migrations_online() -> None:
    """Run on the connection mlpred handed over, else on one opened from the configuration."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    url = context.get_x_argument(as_dictionary=True).get("db")
    engine = create_engine(normalize_url(resolve_database_url(url)))
    with engine.begin() as conn:
        _configure(conn)
        context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    """Emit SQL for the configured database instead of running it."""
    url = context.get_x_argument(as_dictionary=True).get("db")
    context.configure(
        url=normalize_url(resolve_database_url(url)),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
