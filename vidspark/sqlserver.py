"""``vidspark sql-server``: the tables and views over JDBC/ODBC, read-only, from one long-lived Spark.

It is the Spark Thrift Server (the HiveServer2 protocol: beeline, Hive JDBC and ODBC drivers,
DBeaver, Superset, PyHive) started inside a Spark application that registered the tables and the
views once. It runs in single-session mode, so every connection sees the same tables and views,
and queries read the latest Delta snapshot (a nightly job's commits show in the next query).

Read-only: the server registers the tables that exist (it creates and migrates nothing), then
enables ``vidspark.ReadOnlyExtension`` (a Spark SQL check rule compiled at install time), so that
a statement fails when its plan (or a subquery's) holds a command other than metadata ones (SHOW,
DESCRIBE, EXPLAIN, USE, SET that only reads an option), a SET that assigns or a RESET, or
reflection (``reflect``, ``java_method``): no INSERT, UPDATE, DELETE, MERGE, OPTIMIZE, VACUUM,
RESTORE, CREATE, DROP, ALTER, CACHE or ADD JAR from a client. Queries on file paths
(``SELECT * FROM parquet.`/some/path```) are off, and a session where a client turned them back
on runs nothing. The server listens on ``sql_server.host`` (127.0.0.1 by default) without
authentication: README "SQL" says how to require it before listening on another address.

``vidspark sql`` sends its query here when a server of the same ``storage.root`` answers on
``sql_server.host``/``port``, and starts Spark itself otherwise.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from vidspark import storage
from vidspark.config import Config
from vidspark.errors import VidsparkError

log = logging.getLogger(__name__)

ROOT_KEY = "vidspark.storage.root"   # a session option the server sets: which store it serves
# README's first query: the ranked suspicious frames (what `make bench` times)
README_QUERY = ("SELECT video, second, frame_name, prob_suspicious FROM predictions "
                "WHERE prediction = 1 ORDER BY prob_suspicious DESC")


def read_only_settings(config: Config) -> dict[str, str]:
    """Spark settings of a read-only reader (the server, or ``vidspark sql``'s own Spark): Delta
    and the read-only extension, no SQL on file paths; ``enable_read_only`` then switches the
    check on. A ``VidsparkError`` when the extension was never compiled."""
    from vidspark.session import installed_jars, READ_ONLY_EXTENSION, READ_ONLY_JAR

    if not has_read_only_extension():
        raise VidsparkError(f"the read-only SQL check ({READ_ONLY_JAR}) is not installed: run "
                            "`make install` (or `python -m vidspark.session --install-jars "
                            "--write-spark-defaults`) with a JDK's javac on PATH")
    return {
        # The Thrift server's handler threads load classes through the JVM's own class path, not
        # through the loader that spark.jars feeds: Delta goes on the driver's class path.
        "spark.driver.extraClassPath": ":".join(installed_jars()),
        "spark.sql.extensions": f"io.delta.sql.DeltaSparkSessionExtension,{READ_ONLY_EXTENSION}",
        "spark.sql.runSQLOnFiles": "false",
    }


def has_read_only_extension() -> bool:
    from vidspark.session import installed_jars, READ_ONLY_JAR

    return any(j.endswith(READ_ONLY_JAR) for j in installed_jars())


def enable_read_only(spark) -> None:
    """From now on every statement of this Spark application is checked (see the module doc)."""
    from vidspark.session import READ_ONLY_EXTENSION

    jvm = spark.sparkContext._jvm
    loader = jvm.Thread.currentThread().getContextClassLoader()
    jvm.java.lang.Class.forName(READ_ONLY_EXTENSION, True, loader) \
        .getMethod("enable", None).invoke(None, None)


def server_settings(config: Config) -> dict[str, str]:
    """Spark settings of the server application: read-only, single session, the listening
    address."""
    server = config.sql_server
    # HiveServer2's session bookkeeping boots an in-memory Derby database, which would leave a
    # derby.log in the working folder.
    java_options = " ".join(filter(None, [config.spark.get("spark.driver.extraJavaOptions"),
                                          "-Dderby.stream.error.file=/dev/null"]))
    return {
        **read_only_settings(config),
        "spark.driver.extraJavaOptions": java_options,
        "spark.sql.hive.thriftServer.singleSession": "true",
        "spark.hadoop.hive.server2.thrift.bind.host": str(server.host),
        "spark.hadoop.hive.server2.thrift.port": str(server.port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.ui.enabled": "false",
    }


def start(config: Config):
    """Build the server's Spark session, register the existing tables and views (creating or
    changing nothing), make it read-only and start the Thrift server; returns the session."""
    from vidspark.session import build_spark

    config = config.with_spark(server_settings(config))
    spark = build_spark(config, app_name="vidspark-sql-server", read_only=True)
    spark.sparkContext.setLogLevel("WARN")
    spark.conf.set(ROOT_KEY, storage.root(config))
    registered = {t.name for t in spark.catalog.listTables()}
    missing = sorted(set(storage.TABLES) - registered)
    if missing:
        log.warning("sql-server: no table %s under %s yet (a first nightly run creates them; "
                    "restart the server afterwards)", ", ".join(missing), storage.root(config))
    enable_read_only(spark)
    # The first query of each table loads its Delta log and Spark's code paths: done here, so a
    # client's first query is as quick as the next.
    for name in sorted(set(storage.TABLES) & registered):
        spark.sql(f"SELECT count(*) FROM {name}").collect()
    if "predictions" in registered:
        spark.sql(README_QUERY).collect()
    spark.sparkContext._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2 \
        .startWithContext(spark._jsparkSession.sqlContext())
    return spark


def serve(config: Config) -> None:
    """Start the server and keep it until SIGINT or SIGTERM."""
    started = time.perf_counter()
    spark = start(config)
    host, port = config.sql_server.host, config.sql_server.port
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"vidspark sql-server: {storage.root(config)} read-only at jdbc:hive2://{host}:{port}/ "
          f"(ready in {time.perf_counter() - started:.1f}s; Ctrl-C stops it)", flush=True)
    try:
        stop.wait()
    finally:
        spark.stop()


def _answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connect(config: Config):
    """A DB-API connection to a running server of this ``storage.root``, or None when none
    answers (or it serves another store)."""
    host, port = config.sql_server.host, int(config.sql_server.port)
    if not _answers(host, port):
        return None
    from pyhive import hive

    try:
        conn = hive.connect(host=host, port=port, auth="NONE", username="vidspark")
        cursor = conn.cursor()
        cursor.execute(f"SET {ROOT_KEY}")
        served = dict(cursor.fetchall()).get(ROOT_KEY)
    except Exception as exc:   # something else listens there, or it is still starting
        log.warning("sql_server at %s:%s does not answer as a vidspark sql-server (%s)",
                    host, port, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if served != storage.root(config):
        log.warning("the sql-server at %s:%s serves %s, not %s: querying without it", host,
                    port, served, storage.root(config))
        conn.close()
        return None
    return conn


def query(conn, sql: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of ``sql`` through a server connection; a refused or failing
    statement raises ``VidsparkError`` with the server's one-line reason."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall() if cursor.description else []
    except Exception as exc:
        raise VidsparkError(server_message(exc)) from None
    columns = [d[0] for d in cursor.description or []]
    return columns, rows


def server_message(exc: BaseException) -> str:
    """The useful line of a HiveServer2 error (its errorMessage, without the Java trace)."""
    status = getattr((getattr(exc, "args", None) or [None])[0], "status", None)
    text = getattr(status, "errorMessage", None) or str(exc)
    for line in text.splitlines():
        line = line.strip()
        if "vidspark SQL is read-only" in line:
            return line[line.index("vidspark SQL is read-only"):]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first.replace("org.apache.hive.service.cli.HiveSQLException: ", "")
