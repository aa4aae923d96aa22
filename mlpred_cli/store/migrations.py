"""The migrations runner: Alembic's scripts, the database's revision, upgrades and checks."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from mlpred_cli.errors import SchemaNotReady
from mlpred_cli.store.database import mask_url
from mlpred_cli.store.driver_errors import database_errors


def migrations_dir() -> Path:
    """Alembic's script directory: inside an installed wheel, else the source checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_migrations" / "alembic"
    if installed.is_dir():
        return installed
    return package_dir.parent / "alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at mlpred's migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The revision the code expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaNotReady("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an unmigrated database."""
    with database_errors(engine.url), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: Engine) -> str:
    """Migrate the database to the newest revision; safe to run again. Returns the revision."""
    try:
        with database_errors(engine.url), engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
    except CommandError as error:  # e.g. a revision newer than this mlpred knows
        raise SchemaNotReady(f"cannot migrate {mask_url(engine.url)}: {error}") from None
    revision = current_revision(engine)
    if revision is None:
        raise SchemaNotReady(f"database {mask_url(engine.url)} has no revision after upgrading")
    return revision


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` empties it)."""
    with database_errors(engine.url), engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def require_schema(engine: Engine) -> None:
    """Raise ``SchemaNotReady`` unless the database is migrated to head."""
    revision = current_revision(engine)
    if revision != head_revision():
        state = "not initialised" if revision is None else f"at revision {revision}"
        raise SchemaNotReady(
            f"database {mask_url(engine.url)} is {state}; run `mlpred init-db` first"
        )


def ensure_schema(engine: Engine) -> None:
    """Migrate an empty database; leave a current one alone (used by ``log-test``)."""
    if current_revision(engine) != head_revision():
        upgrade_to_head(engine)
