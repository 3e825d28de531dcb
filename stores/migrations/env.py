"""Alembic environment: run by stores.cases.migrate() with a live connection.

To write a new migration against a scratch database:
    alembic -c stores/migrations/alembic.ini -x url=sqlite:////tmp/scratch.db revision --autogenerate -m "..."
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mimamori.stores.cases import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as fresh:
        run(fresh)
