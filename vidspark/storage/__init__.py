"""The only module that knows where tables live and how they are written.

Tables live under ``<storage.root>/tables/<name>`` in ``storage.format`` (Delta by default) and are
registered by name in the session catalog, so ``spark.sql("SELECT ... FROM predictions")`` works
in any session built from the same config. Writes are idempotent:

* ``replace_where``/``replace_videos`` swap all rows of some videos (or of one run) at once
  (Delta ``replaceWhere``),
* ``upsert`` merges rows on their key (Delta ``MERGE``),
* ``overwrite`` replaces a whole table.

With ``storage.format: parquet`` tables keyed by video are partitioned by ``video`` and the same
operations are done with dynamic partition overwrite (not atomic across partitions: prefer Delta).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Iterable, Optional, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark.config import Config
from vidspark.storage.schemas import TABLES
from vidspark.storage.views import VIEWS

log = logging.getLogger(__name__)

_KEYS = {
    "videos": ("video",),
    "frames": ("video", "second"),
    "motion": ("video", "second"),
    "features": ("video", "second"),
    "labels": ("video", "second"),
    "predictions": ("video", "second"),
    "segments": ("video", "start_second"),
    "reviews": ("review_id",),
    "models": ("model_id",),
    "runs": ("run_id", "stage"),
}


def root(config: Config) -> str:
    return config.storage.root.rstrip("/")


def table_path(config: Config, name: str) -> str:
    return f"{root(config)}/tables/{name}"


def _fmt(config: Config) -> str:
    return config.storage.format


def _partitioned(config: Config, name: str) -> bool:
    return _fmt(config) == "parquet" and _KEYS[name][0] == "video"


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Written under <storage.root>/tables once every table was brought up to the schemas of
# storage.schemas: while it names the same schemas, a job trusts the tables and checks nothing.
SCHEMA_STAMP = "_vidspark_schemas.json"


# Delta table properties. The runs table takes a few small commits per job (its start, each
# stage, its end): a checkpoint every 10 commits (Delta's default) cost a few seconds in a job's
# bookkeeping more nights than not; reading it replays at most 100 small commit files instead.
TABLE_PROPERTIES = {"runs": {"delta.checkpointInterval": "100"}}


def schema_fingerprint() -> str:
    """Identifies the schemas (``storage.schemas.TABLES``) and properties of every table."""
    text = json.dumps({name: [schema.jsonValue(), TABLE_PROPERTIES.get(name, {})]
                       for name, schema in TABLES.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp_path(config: Config) -> str:
    return f"{root(config)}/tables/{SCHEMA_STAMP}"


def ensure_tables(spark: SparkSession, config: Config) -> set:
    """What a job needs before its stages: every table exists and has today's schema. On a store
    whose schema stamp names today's schemas that is a check that each table's ``_delta_log``
    exists (no Delta snapshot is read, no catalog entry made: the stages read tables by path);
    otherwise ``register_tables`` (create, migrate, register) runs and writes the stamp.
    Returns the tables created."""
    if _fmt(config) != "delta" or read_text(spark, _stamp_path(config)) != schema_fingerprint():
        # A Delta table exists with its log; a Parquet one gets its folder with its first rows.
        marker = "/_delta_log" if _fmt(config) == "delta" else ""

        def present():
            return {n for n in TABLES if _exists(spark, table_path(config, n) + marker)}

        before = present()
        register_tables(spark, config)
        if _fmt(config) == "delta":
            write_text(spark, _stamp_path(config), schema_fingerprint())
        return present() - before
    missing = [n for n in TABLES if not _exists(spark, table_path(config, n) + "/_delta_log")]
    if missing:   # a table removed by hand: made again, empty
        register_tables(spark, config, missing)
    return set(missing)


def read_text(spark: SparkSession, path: str) -> Optional[str]:
    """A small text file of the store (any Hadoop file system); None when there is none or it
    cannot be read (such as a file replaced by hand beside its Hadoop checksum): these files only
    let a job skip work, so a missing one costs a full check, never a wrong answer."""
    from py4j.protocol import Py4JJavaError

    hpath, fs = _hadoop_path(spark, path)
    if not fs.exists(hpath):
        return None
    try:
        stream = fs.open(hpath)
        try:
            jvm = spark.sparkContext._jvm
            return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8").strip()
        finally:
            stream.close()
    except Py4JJavaError as e:
        log.warning("%s cannot be read (%s); the job checks instead", path,
                    e.java_exception.toString())
        return None


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write (replace) a small text file of the store."""
    hpath, fs = _hadoop_path(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()


def table_versions(spark: SparkSession, config: Config, names: Iterable[str]) -> dict:
    """{table: its latest Delta commit version} from each ``_delta_log`` listing (no snapshot is
    read); None for every table of a Parquet store, which has no versions."""
    out = {}
    for name in names:
        if _fmt(config) != "delta":
            out[name] = None
            continue
        hpath, fs = _hadoop_path(spark, table_path(config, name) + "/_delta_log")
        versions = [int(st.getPath().getName()[:-5]) for st in (fs.listStatus(hpath)
                    if fs.exists(hpath) else [])
                    if re.fullmatch(r"\d{20}\.json", st.getPath().getName())]
        out[name] = max(versions) if versions else None
    return out


def register_tables(spark: SparkSession, config: Config, names: Optional[Iterable[str]] = None,
                    read_only: bool = False) -> set:
    """Create missing tables and (re)register every table by name in the session catalog, then
    the views (``names``: only these tables and views, e.g. ``names_in(query)``); returns the
    names registered.

    The catalog entry is external (data stays where it is), so re-registering a name against
    another ``storage.root`` never touches data. ``read_only`` (a reader such as ``vidspark
    sql`` or the SQL server): existing tables are registered as they are, nothing is created or
    migrated, and a view is registered when the tables it reads are.
    """
    fmt = _fmt(config)
    wanted = set(TABLES) | set(VIEWS) if names is None else set(names)
    registered = set()
    for name, schema in TABLES.items():
        if name not in wanted:
            continue
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        path = table_path(config, name)
        if fmt == "delta":
            if read_only:
                from delta.tables import DeltaTable

                if not DeltaTable.isDeltaTable(spark, path):
                    continue
            elif not _ensure_delta_table(spark, config, name):
                registered.add(name)       # created and registered in one statement
                continue
            spark.sql(f"CREATE TABLE {name} USING delta LOCATION {_sql_str(path)}")
        else:
            if read_only and not _exists(spark, path):
                continue
            if not read_only:
                _migrate_vectors(spark, config, name)
            # Partition columns are discovered from the folder layout (video=...).
            spark.catalog.createTable(name, path=path, source="parquet", schema=schema)
        registered.add(name)
    for name, query in VIEWS.items():
        if name in wanted and (names_in(query) or set()) & set(TABLES) <= registered:
            spark.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {query}")
            registered.add(name)
    return registered


def names_in(query: str) -> Optional[set]:
    """The tables and views a SQL text names, with the tables its views read; None when it
    names none (``SHOW TABLES``: register everything)."""
    words = set(re.findall(r"[a-z_]+", query.lower()))
    found = words & (set(TABLES) | set(VIEWS))
    if not found:
        return None
    for view in found & set(VIEWS):
        found |= set(re.findall(r"[a-z_]+", VIEWS[view].lower())) & set(TABLES)
    return found


def _ensure_delta_table(spark: SparkSession, config: Config, name: str) -> bool:
    """Bring the Delta table ``name`` up to date with its schema. A missing table is created and
    registered by name in one DDL statement (an empty table's first commit, no Spark job):
    returns False then, True for an existing table, which the caller registers."""
    from delta.tables import DeltaTable

    path = table_path(config, name)
    properties = TABLE_PROPERTIES.get(name, {})
    if not DeltaTable.isDeltaTable(spark, path):
        # Columns nullable, as a DataFrame write would make them.
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in TABLES[name].fields)
        spark.sql(f"CREATE TABLE {name} ({columns}) USING delta LOCATION {_sql_str(path)}"
                  + _tblproperties(properties))
        return False
    if properties:
        have = DeltaTable.forPath(spark, path).detail().first().properties or {}
        if any(have.get(k) != v for k, v in properties.items()):
            spark.sql(f"ALTER TABLE delta.`{path}` SET" + _tblproperties(properties))
    _migrate_vectors(spark, config, name)
    # A table written by an older vidspark gets the columns added since (always nullable).
    have = set(DeltaTable.forPath(spark, path).toDF().columns)
    missing = [f for f in TABLES[name].fields if f.name not in have]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
        log.info("table %s: added columns %s", name, ", ".join(f.name for f in missing))
    return True


def _tblproperties(properties: dict) -> str:
    if not properties:
        return ""
    return " TBLPROPERTIES (" + ", ".join(f"{_sql_str(k)} = {_sql_str(v)}"
                                         for k, v in sorted(properties.items())) + ")"


def _migrate_vectors(spark: SparkSession, config: Config, name: str) -> None:
    """Rewrite, in place and in one commit, columns an older vidspark stored as Spark ML vectors
    (a Spark-only type other Delta readers refuse: "Unsupported Delta table type: 'udt'") as the
    ``array<float>`` the schema now says."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.types import UserDefinedType

    path = table_path(config, name)
    if _fmt(config) == "delta":
        current = spark.read.format("delta").load(path)
    elif _exists(spark, path):
        current = spark.read.parquet(path)
    else:
        return
    udts = [f.name for f in current.schema.fields if isinstance(f.dataType, UserDefinedType)
            and f.name in TABLES[name].fieldNames()]
    if not udts:
        return
    converted = current
    for column in udts:
        converted = converted.withColumn(column, vector_to_array(column, "float32"))
    converted = converted.localCheckpoint()        # the rewrite reads the table it replaces
    if _fmt(config) == "delta":
        (converted.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
         .save(path))
    else:
        writer = converted.write.mode("overwrite")
        if _partitioned(config, name):
            writer = writer.partitionBy("video")
        writer.parquet(path)
    log.info("table %s: column(s) %s migrated from Spark ML vectors to array<float> (%d rows)",
             name, ", ".join(udts), converted.count())


def table_version(spark: SparkSession, config: Config, name: str) -> "int | None":
    """The Delta version of a table (None for Parquet, which has no versions)."""
    if _fmt(config) != "delta":
        return None
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, table_path(config, name)).history(1).first().version


def read(spark: SparkSession, config: Config, name: str) -> DataFrame:
    """The current contents of a table (read by path, so never a stale catalog listing)."""
    path = table_path(config, name)
    if _fmt(config) == "delta":
        return spark.read.format("delta").load(path)
    if not _exists(spark, path):
        return spark.createDataFrame([], TABLES[name])
    df = spark.read.schema(TABLES[name]).parquet(path)
    return df.select(*TABLES[name].fieldNames())


def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath, hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def _exists(spark: SparkSession, path: str) -> bool:
    hpath, fs = _hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def _in_predicate(column: str, values: Iterable[str]) -> str:
    return f"{column} IN (" + ", ".join(_sql_str(v) for v in sorted(set(values))) + ")"


def _conform(df: DataFrame, name: str) -> DataFrame:
    return df.select(*TABLES[name].fieldNames())


def _refresh(spark: SparkSession, name: str) -> None:
    try:
        spark.catalog.refreshTable(name)
    except Exception:  # not registered in this session: nothing to refresh
        pass


def replace_where(spark: SparkSession, config: Config, name: str, df: DataFrame,
                  column: str, values: Sequence[str]) -> None:
    """Replace every row of table ``name`` whose ``column`` is one of ``values`` by the rows of
    ``df`` (which must only hold such rows), in one atomic commit with Delta (``replaceWhere``).
    An empty ``df`` deletes those rows."""
    if not values:
        return
    df = _conform(df, name)
    path = table_path(config, name)
    if _fmt(config) == "delta":
        (df.write.format("delta").mode("overwrite")
         .option("replaceWhere", _in_predicate(column, values)).save(path))
    elif _partitioned(config, name) and column == "video":
        _parquet_replace_partitions(spark, config, name, df, values)
    else:
        kept = read(spark, config, name).where(~F.col(column).isin(list(values)))
        overwrite(spark, config, name, kept.unionByName(df))
    _refresh(spark, name)


def replace_videos(spark: SparkSession, config: Config, name: str, df: DataFrame,
                   videos: Sequence[str]) -> None:
    """Replace every row of ``videos`` in table ``name`` by the rows of ``df``."""
    replace_where(spark, config, name, df, "video", videos)


def delete_videos(spark: SparkSession, config: Config, name: str, videos: Sequence[str]) -> None:
    """Delete every row of ``videos`` from table ``name``."""
    replace_where(spark, config, name, spark.createDataFrame([], TABLES[name]), "video", videos)


def set_camera(spark: SparkSession, config: Config, name: str, cameras: DataFrame) -> None:
    """Set the ``camera`` column of table ``name`` from ``cameras`` (video, camera) where it
    differs (a store written before cameras existed, or a changed ``input.camera``)."""
    if _fmt(config) == "delta":
        from delta.tables import DeltaTable

        (DeltaTable.forPath(spark, table_path(config, name)).alias("t")
         .merge(cameras.alias("s"), "t.video = s.video")
         .whenMatchedUpdate(condition="NOT (t.camera <=> s.camera)", set={"camera": "s.camera"})
         .execute())
        _refresh(spark, name)
        return
    rows = (read(spark, config, name).drop("camera")
            .join(cameras.select("video", "camera"), "video", "inner"))
    replace_videos(spark, config, name, rows, [r.video for r in cameras.select("video").collect()])


def replace_run(spark: SparkSession, config: Config, df: DataFrame, run_id: str) -> None:
    """Replace every ``runs`` row of one run."""
    replace_where(spark, config, "runs", df, "run_id", [run_id])


def upsert(spark: SparkSession, config: Config, name: str, df: DataFrame) -> None:
    """Insert rows of ``df``, replacing rows with the same key."""
    df = _conform(df, name)
    keys = _KEYS[name]
    if _fmt(config) == "delta":
        from delta.tables import DeltaTable

        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        (DeltaTable.forPath(spark, table_path(config, name)).alias("t")
         .merge(df.alias("s"), cond)
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    elif _partitioned(config, name):
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            videos = [r.video for r in df.select("video").distinct().collect()]
            if videos:
                kept = (read(spark, config, name).where(F.col("video").isin(videos))
                        .join(df.select(*keys), list(keys), "left_anti"))
                _parquet_replace_partitions(spark, config, name, kept.unionByName(df), videos)
        finally:
            df.unpersist()
    else:
        merged = (read(spark, config, name).join(df.select(*keys), list(keys), "left_anti")
                  .unionByName(df)).localCheckpoint()
        merged.write.mode("overwrite").parquet(table_path(config, name))
    _refresh(spark, name)


def append(spark: SparkSession, config: Config, name: str, df: DataFrame) -> None:
    df = _conform(df, name)
    if _fmt(config) == "delta":
        df.write.format("delta").mode("append").save(table_path(config, name))
    elif _partitioned(config, name):
        df.write.mode("append").partitionBy("video").parquet(table_path(config, name))
    else:
        df.write.mode("append").parquet(table_path(config, name))
    _refresh(spark, name)


def overwrite(spark: SparkSession, config: Config, name: str, df: DataFrame) -> None:
    """Replace the whole table with ``df``."""
    df = _conform(df, name)
    path = table_path(config, name)
    if _fmt(config) == "delta":
        df.write.format("delta").mode("overwrite").save(path)
    else:
        df = df.localCheckpoint()  # the source may read the folder being overwritten
        writer = df.write.mode("overwrite")
        if _partitioned(config, name):
            writer = writer.partitionBy("video")
        writer.parquet(path)
    _refresh(spark, name)


def _parquet_replace_partitions(spark: SparkSession, config: Config, name: str, df: DataFrame,
                                videos: Sequence[str]) -> None:
    """Dynamic partition overwrite of the ``video`` partitions in ``videos``; partitions of videos
    that get no new rows are deleted."""
    df = df.localCheckpoint()  # ``df`` may read the partitions that are about to be replaced
    present = {r.video for r in df.select("video").distinct().collect()}
    previous = spark.conf.get("spark.sql.sources.partitionOverwriteMode")
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        if present:
            df.write.mode("overwrite").partitionBy("video").parquet(table_path(config, name))
    finally:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", previous)
    gone = [v for v in videos if v not in present]
    if gone:
        _delete_partitions(spark, config, name, gone)


def _delete_partitions(spark: SparkSession, config: Config, name: str, videos: Sequence[str]) -> None:
    jvm = spark.sparkContext._jvm
    base, fs = _hadoop_path(spark, table_path(config, name))
    escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
    for video in videos:
        part = jvm.org.apache.hadoop.fs.Path(base, "video=" + escape(video))
        if fs.exists(part):
            fs.delete(part, True)
