"""Portable dumps of the stores that cannot be recomputed: database tables, Milvus collections, buckets.

Each dump is a plain file (gzip'd JSON lines, or a tar of objects) that ``stores/backups.py``
seals; each load reads one back into empty or idempotent places. All three are generic:

* **tables**: every table the database holds (reflected, not a fixed list, so tables added by
  later migrations are in), in foreign-key order, with the Alembic revision they were at. The
  read is one consistent snapshot: SQLite is first copied with its online backup API, a
  PostgreSQL read runs in one REPEATABLE READ transaction. Values are typed in the JSON
  (times, bytes), so a dump from SQLite loads into PostgreSQL and back.
* **collections**: a Milvus collection's schema, indexes, partitions and every row
  (vectors included), loaded back by upsert on its primary key (idempotent).
* **objects**: every object of a bucket with its content type, put back under the same keys.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import gzip
import json
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from mimamori.core.errors import Conflict, InvalidInput

BATCH_ROWS = 500


# --- typed JSON ----------------------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # SQLite keeps UTC without its zone (stores/cases.py UTCDateTime)
            value = value.replace(tzinfo=dt.UTC)
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    return value


def _decode(value: Any, timezone_aware: bool = True) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        if tag == "$datetime":
            moment = dt.datetime.fromisoformat(raw)
            return moment if timezone_aware else moment.astimezone(dt.UTC).replace(tzinfo=None)
        if tag == "$date":
            return dt.date.fromisoformat(raw)
        if tag == "$bytes":
            return base64.b64decode(raw)
        if tag == "$decimal":
            return decimal.Decimal(raw)
    return value


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


# --- database tables -----------------------------------------------------------------------------

VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class TablesDump:
    revision: str | None
    rows: dict[str, int]  # per table, in load order


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that reads one consistent state of the whole database."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        with tempfile.TemporaryDirectory(prefix="mimamori-dump-") as folder:
            copy = Path(folder) / "snapshot.sqlite3"
            source, target = sqlite3.connect(database), sqlite3.connect(copy)
            try:
                source.backup(target)  # SQLite's online backup: a consistent copy while others write
            finally:
                source.close()
                target.close()
            snapshot = create_engine(f"sqlite:///{copy}")
            try:
                with snapshot.connect() as connection:
                    yield connection
            finally:
                snapshot.dispose()
        return
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection, connection.begin():
        yield connection


def _revision(connection: Connection, metadata: MetaData) -> str | None:
    if VERSION_TABLE not in metadata.tables:
        return None
    return connection.execute(select(metadata.tables[VERSION_TABLE].c.version_num)).scalar()


def _data_tables(metadata: MetaData) -> list[Table]:
    return [table for table in metadata.sorted_tables if table.name != VERSION_TABLE]


def dump_tables(engine: Engine, path: Path) -> TablesDump:
    """Every row of every table, one JSON line each (``{"table": ..., "row": {...}}``)."""
    counts: dict[str, int] = {}
    with _snapshot(engine) as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        revision = _revision(connection, metadata)
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            for table in _data_tables(metadata):
                counts[table.name] = 0
                order = list(table.primary_key.columns) or list(table.columns)
                for row in connection.execute(select(table).order_by(*order)).mappings():
                    handle.write(json.dumps({"table": table.name,
                                             "row": {k: _encode(v) for k, v in row.items()}}) + "\n")
                    counts[table.name] += 1
    return TablesDump(revision, counts)


def occupied_tables(engine: Engine) -> dict[str, int]:
    """Tables of ``engine`` that hold rows (a restore goes into an empty database only)."""
    metadata = MetaData()
    with engine.connect() as connection:
        metadata.reflect(connection)
        return _occupied(connection, metadata)


def _occupied(connection: Connection, metadata: MetaData) -> dict[str, int]:
    counts = {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one()
              for t in _data_tables(metadata)}
    return {name: count for name, count in counts.items() if count}


def load_tables(engine: Engine, path: Path, dump: TablesDump) -> dict[str, int]:
    """Insert the dump's rows into the (migrated, empty) database of ``engine``, in one transaction."""
    with engine.begin() as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        revision = _revision(connection, metadata)
        if revision != dump.revision:
            raise Conflict("backup_schema_mismatch",
                           f"the backup's database is at migration {dump.revision}, this one at {revision}: "
                           "restore with the mimamori version that made the backup, then upgrade")
        missing = set(dump.rows) - set(metadata.tables)
        if missing:
            raise Conflict("backup_schema_mismatch", f"tables {sorted(missing)} of the backup are not in this database")
        occupied = _occupied(connection, metadata)  # again, in the restore's transaction
        if occupied:
            raise Conflict("restore_not_empty", f"the database already holds rows in {sorted(occupied)}: "
                           "a restore goes into an empty database (a new one, after `stack up`)")
        aware = engine.dialect.name != "sqlite"
        restore_triggers = _suspend_triggers(connection, _data_tables(metadata))
        loaded = dict.fromkeys(dump.rows, 0)
        batch: list[dict[str, Any]] = []
        current: Table | None = None
        for line in _lines(path):
            table = metadata.tables[line["table"]]
            if table is not current and batch:
                connection.execute(insert(current), batch)
                batch = []
            current = table
            batch.append({k: _decode(v, aware) for k, v in line["row"].items()})
            loaded[table.name] += 1
            if len(batch) >= BATCH_ROWS:
                connection.execute(insert(current), batch)
                batch = []
        if batch:
            connection.execute(insert(current), batch)
        restore_triggers()
        if engine.dialect.name == "postgresql":
            _advance_sequences(connection, metadata)
    if loaded != dump.rows:
        raise InvalidInput("backup_corrupt", f"rows loaded {loaded} differ from the manifest's {dump.rows}")
    return loaded


def _suspend_triggers(connection: Connection, tables: list[Table]):
    """Suspend the database's own triggers in this transaction; return what puts them back.

    They guard actions (the audit log and decisions are append-only, a takedown starts as a draft
    and moves only by a recorded transition), not a restore, which puts rows back as they were:
    a takedown already sent, with its transitions. Suspended in the restore's transaction only:
    a failed restore rolls back with its triggers in place (DDL is transactional in both).
    """
    if connection.dialect.name == "sqlite":
        driver = connection.connection.driver_connection
        if not driver.in_transaction:
            # pysqlite begins a transaction only before DML; the DROPs below must be inside it.
            connection.exec_driver_sql("BEGIN")
        triggers = list(connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        for name, _sql in triggers:
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')

        def restore() -> None:
            for _name, sql in triggers:
                connection.exec_driver_sql(sql)
        return restore
    if connection.dialect.name == "postgresql":
        for table in tables:  # USER: the tables' own triggers; foreign keys stay checked
            connection.exec_driver_sql(f'ALTER TABLE "{table.name}" DISABLE TRIGGER USER')

        def restore() -> None:
            for table in tables:
                connection.exec_driver_sql(f'ALTER TABLE "{table.name}" ENABLE TRIGGER USER')
        return restore
    return lambda: None


def _advance_sequences(connection: Connection, metadata: MetaData) -> None:
    """Rows came with their ids: move each serial sequence past them, or the next insert collides."""
    for table in _data_tables(metadata):
        for column in table.primary_key.columns:
            sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                          {"t": table.name, "c": column.name}).scalar()
            if sequence:
                connection.execute(text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM '
                                        f'"{table.name}"), 0) + 1, false)'), {"s": sequence})


# --- Milvus collections --------------------------------------------------------------------------

def _field_value(dtype_name: str, value: Any) -> Any:
    if dtype_name == "BINARY_VECTOR":
        raw = b"".join(value) if isinstance(value, list) else bytes(value)
        return {"$bytes": base64.b64encode(raw).decode()}
    return _plain(value)


def _plain(value: Any) -> Any:
    """What pymilvus returns (numpy scalars, protobuf repeated fields, bytes) as JSON-able values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str | bytes | bytearray | memoryview):
        return _encode(value)
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        return value.item()
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return _encode(value)


def dump_collection(alias: str, name: str, path: Path) -> int:
    """Schema, indexes, partitions and every row of collection ``name``; returns the row count."""
    from pymilvus import Collection

    collection = Collection(name, using=alias)
    collection.load()
    schema = collection.schema.to_dict()
    types = {field.name: field.dtype.name for field in collection.schema.fields}
    primary = collection.schema.primary_field.name
    indexes = [{"field": index.field_name, "name": index.index_name, "params": index.params}
               for index in collection.indexes]
    partitions = [partition.name for partition in collection.partitions]
    from pymilvus import utility

    aliases = list(utility.list_aliases(name, using=alias))
    rows = 0
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"collection": name, "schema": _jsonable(schema), "indexes": indexes,
                                 "partitions": partitions, "aliases": aliases,
                                 "shards": collection.num_shards}) + "\n")
        for partition in partitions:
            seen: set[Any] = set()
            iterator = collection.query_iterator(batch_size=BATCH_ROWS, output_fields=list(types),
                                                 partition_names=[partition], consistency_level="Strong")
            try:
                while batch := iterator.next():
                    for row in batch:
                        if row[primary] in seen:
                            continue
                        seen.add(row[primary])
                        handle.write(json.dumps({"partition": partition, "row": {
                            k: _field_value(types[k], v) for k, v in row.items() if k in types}}) + "\n")
                        rows += 1
            finally:
                iterator.close()
    return rows


def _jsonable(value: Any) -> Any:
    """A pymilvus schema dict with its enums as names."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "name") and hasattr(value, "value"):  # an enum (DataType)
        return value.name
    return value


def _schema(raw: dict[str, Any]):
    from pymilvus import CollectionSchema, DataType, FieldSchema

    fields = []
    for field in raw["fields"]:
        params = dict(field.get("params") or {})
        kwargs = {k: field[k] for k in ("is_primary", "auto_id", "description") if k in field}
        if field.get("is_partition_key"):
            kwargs["is_partition_key"] = True
        if "element_type" in field:
            kwargs["element_type"] = DataType[field["element_type"]]
        fields.append(FieldSchema(field["name"], DataType[field["type"]], **kwargs, **params))
    return CollectionSchema(fields, description=raw.get("description", ""),
                            enable_dynamic_field=raw.get("enable_dynamic_field", False))


def load_collection(alias: str, path: Path) -> tuple[str, int]:
    """Make the collection (if missing) as it was and upsert every row; (name, rows written)."""
    from pymilvus import Collection, utility

    lines = _lines(path)
    head = next(lines)
    name, schema = head["collection"], _schema(head["schema"])
    if utility.has_collection(name, using=alias):
        collection = Collection(name, using=alias)
        if collection.description != schema.description:
            raise Conflict("backup_schema_mismatch", f"collection {name} exists with description "
                           f"{collection.description!r}, the backup's is {schema.description!r}")
    else:
        collection = Collection(name, schema, using=alias, shards_num=head.get("shards") or 2)
    for index in head["indexes"]:
        if not collection.has_index(index_name=index["name"]):
            collection.create_index(index["field"], index["params"], index_name=index["name"])
    existing = {p.name for p in collection.partitions}
    for partition in head["partitions"]:
        if partition not in existing:
            collection.create_partition(partition)
    collection.load()
    types = {field.name: field.dtype.name for field in schema.fields}
    written = 0
    batch: list[dict[str, Any]] = []
    partition_of_batch = None
    for line in lines:
        if batch and line["partition"] != partition_of_batch:
            collection.upsert(batch, partition_name=partition_of_batch)
            written += len(batch)
            batch = []
        partition_of_batch = line["partition"]
        batch.append({k: _decode(v) if types[k] != "FLOAT_VECTOR" else v for k, v in line["row"].items()})
        if len(batch) >= BATCH_ROWS:
            collection.upsert(batch, partition_name=partition_of_batch)
            written += len(batch)
            batch = []
    if batch:
        collection.upsert(batch, partition_name=partition_of_batch)
        written += len(batch)
    collection.flush()
    for alias_name in head.get("aliases", []):  # the search alias: it pointed here when the backup was made
        if alias_name in utility.list_aliases(name, using=alias):
            continue
        try:
            utility.alter_alias(name, alias_name, using=alias)
        except Exception:
            utility.create_alias(name, alias_name, using=alias)
    return name, written


# --- buckets -------------------------------------------------------------------------------------

def dump_bucket(client, bucket: str, path: Path) -> int:
    """Every object of ``bucket`` into a tar at ``path`` (its content type in a PAX header)."""
    import io

    count = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if not client.bucket_exists(bucket):
            return 0
        for obj in client.list_objects(bucket, recursive=True):
            response = client.get_object(bucket, obj.object_name)
            try:
                data = response.read()
                content_type = response.headers.get("Content-Type", "application/octet-stream")
            finally:
                response.close()
                response.release_conn()
            info = tarfile.TarInfo(obj.object_name)
            info.size = len(data)
            info.pax_headers = {"MIMAMORI.content_type": content_type}
            tar.addfile(info, io.BytesIO(data))
            count += 1
    return count


def load_bucket(client, bucket: str, path: Path) -> int:
    """Put every object of the tar back into ``bucket`` under its key (overwrites: idempotent)."""
    count = 0
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    with tarfile.open(path, "r") as tar:
        for info in tar:
            if not info.isfile():
                continue
            source = tar.extractfile(info)
            assert source is not None
            client.put_object(bucket, info.name, source, info.size,
                              content_type=info.pax_headers.get("MIMAMORI.content_type", "application/octet-stream"))
            count += 1
    return count
