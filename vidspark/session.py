"""The one place that builds a SparkSession.

Jobs never choose the master: ``spark-submit --master ...`` does (a plain ``python`` run defaults
to ``local[*]``). Delta Lake needs its jars on the driver's class path before the JVM starts, which
a builder running inside ``spark-submit`` cannot do; so the Delta settings live in
``spark-defaults.conf`` and the builder sets them again for plain Python runs.

``make install`` resolves Delta's jars once (``--install-jars``: Spark's own Ivy, against Maven
Central) into the virtualenv (``<venv>/share/vidspark/jars``) and writes a ``spark-defaults.conf``
that lists them in ``spark.jars``: starting Spark then does no network lookups and prints no
dependency resolution. Clusters use the committed ``conf/spark-defaults.conf``, which keeps
``spark.jars.packages`` (each cluster resolves the jars through its own repositories).
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from pyspark.sql import SparkSession

from vidspark.config import Config

log = logging.getLogger(__name__)

# Driver JVM options of a short-lived process: the quick C1 compiler only (C2's compiler threads
# cost more than they save in a job of seconds); C1 alone would also shrink the code cache from
# 240 MB to 48 MB, too small for a whole nightly job ("Out of space in CodeCache for adapters").
# In a cache that size nothing needs flushing: without it the code cache sweeper (4.5 CPU-s of a
# small nightly job's 63) and the recompiling of what it flushed (C1 threads 10.8 -> 6.4 CPU-s)
# go away (per-thread CPU of the job's JVM, /proc/<pid>/task).
QUICK_COMPILER = ("-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m "
                  "-XX:-UseCodeCacheFlushing")
DELTA_VERSION = "4.1.0"
DELTA_PACKAGE = f"io.delta:delta-spark_4.1_2.13:{DELTA_VERSION}"


def jars_dir() -> str:
    """Where ``--install-jars`` puts Delta's jars: inside this Python's environment (the venv)."""
    return os.path.join(sys.prefix, "share", "vidspark", "jars")


def installed_jars() -> list[str]:
    """The jars ``--install-jars`` stored (Delta and what it needs beyond Spark's own jars);
    empty when they were never installed."""
    jars = sorted(glob.glob(os.path.join(jars_dir(), "*.jar")))
    return jars if any(_artifact(j, ivy=True).startswith("delta-spark") for j in jars) else []


def spark_defaults(cluster: bool = False) -> dict[str, str]:
    """Settings every vidspark Spark application needs, as ``spark-defaults.conf`` entries: the
    installed jars (``spark.jars``) when there are any and ``cluster`` is false, else Delta's
    Maven coordinates (``spark.jars.packages``)."""
    jars = [] if cluster else installed_jars()
    where = {"spark.jars": ",".join(jars)} if jars else {"spark.jars.packages": DELTA_PACKAGE}
    return {
        **where,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }


def render_spark_defaults(cluster: bool = False) -> str:
    lines = ["# Written by vidspark (python -m vidspark.session --write-spark-defaults DIR)."]
    lines += [f"{key} {value}" for key, value in spark_defaults(cluster).items()]
    return "\n".join(lines) + "\n"


def _artifact(jar: str, ivy: bool = False) -> str:
    """The artifact of a jar file name without its version: ``delta-storage`` of Ivy's
    ``io.delta_delta-storage-4.1.0.jar`` (``ivy``: ``<organisation>_<artifact>-<version>.jar``;
    organisations have no '_') or of Spark's ``delta-storage-4.1.0.jar``; ``algebra_2.13`` of
    ``algebra_2.13-2.8.0.jar``."""
    name = os.path.basename(jar)
    if ivy:
        name = name.split("_", 1)[1]
    return re.sub(r"-\d[\w.]*(-[\w.]+)?\.jar$", "", name)


def spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def install_jars(dest: str | None = None) -> list[str]:
    """Resolve ``DELTA_PACKAGE`` once with Spark's own Ivy (Maven Central) and copy the jars that
    Spark does not already ship into ``dest`` (default ``jars_dir()``), replacing what was there.
    The resolution's output is captured, and shown only when it fails."""
    dest = dest or jars_dir()
    home = spark_home()
    shipped = {_artifact(j) for j in glob.glob(os.path.join(home, "jars", "*.jar"))}
    with tempfile.TemporaryDirectory(prefix="vidspark-jars-") as tmp:
        script = os.path.join(tmp, "noop.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write("pass\n")
        # An empty conf dir: the defaults being replaced must not take part in the resolution.
        env = dict(os.environ, SPARK_CONF_DIR=tmp, PYSPARK_PYTHON=sys.executable,
                   PYSPARK_DRIVER_PYTHON=sys.executable)
        proc = subprocess.run(
            [os.path.join(home, "bin", "spark-submit"), "--master", "local[1]",
             "--conf", f"spark.jars.ivy={os.path.join(tmp, 'ivy')}",
             "--packages", DELTA_PACKAGE, script],
            env=env, capture_output=True, text=True)
        resolved = sorted(glob.glob(os.path.join(tmp, "ivy", "jars", "*.jar")))
        if proc.returncode != 0 or not resolved:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise RuntimeError(f"could not resolve {DELTA_PACKAGE} from Maven Central:\n{tail}")
        if os.path.isdir(dest):
            for old in glob.glob(os.path.join(dest, "*.jar")):
                os.remove(old)
        os.makedirs(dest, exist_ok=True)
        copied = []
        for jar in resolved:
            if _artifact(jar, ivy=True) not in shipped:
                copied.append(shutil.copy2(jar, os.path.join(dest, os.path.basename(jar))))
    copied.append(build_read_only_extension(os.path.join(dest, READ_ONLY_JAR)))
    return copied


READ_ONLY_JAR = "vidspark-sql-readonly.jar"
READ_ONLY_EXTENSION = "vidspark.ReadOnlyExtension"


def build_read_only_extension(jar_path: str) -> str:
    """Compile ``vidspark/jvm/ReadOnlyExtension.java`` (the SQL server's read-only check) with
    the JDK's ``javac`` against Spark's jars and pack it as ``jar_path``."""
    import zipfile

    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jvm",
                          "ReadOnlyExtension.java")
    java_home = [os.path.join(os.environ["JAVA_HOME"], "bin")] if os.environ.get("JAVA_HOME") else []
    javac = shutil.which("javac", path=os.pathsep.join(java_home + [os.environ.get("PATH", "")]))
    if javac is None:
        raise RuntimeError("javac not found: the SQL server's read-only extension needs a JDK "
                           "(e.g. Debian's openjdk-17-jdk-headless), or set JAVA_HOME to one")
    with tempfile.TemporaryDirectory(prefix="vidspark-javac-") as tmp:
        proc = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", os.path.join(spark_home(), "jars", "*"),
             "-d", tmp, source], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{proc.stderr[-3000:]}")
        with zipfile.ZipFile(jar_path, "w", zipfile.ZIP_DEFLATED) as jar:
            for root, _, files in os.walk(tmp):
                for name in sorted(files):
                    full = os.path.join(root, name)
                    jar.write(full, os.path.relpath(full, tmp))
    return jar_path


def _conf_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def start_session(config: Config, app_name: str = "vidspark",
                  runs_model: bool = False) -> SparkSession:
    """Build (or get) the SparkSession for ``config``, registering nothing. Python workers start
    from ``vidspark.worker``'s daemon, which imports what every task needs once per executor,
    and the model's backend too when the application ``runs_model`` (the featurize stage); a
    ``spark:`` key in the configuration overrides either setting."""
    from vidspark.worker import PRELOAD_ENV, preload_list

    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_defaults().items():
        builder = builder.config(key, value)
    builder = builder.config(
        "spark.sql.execution.arrow.maxRecordsPerBatch",
        str(config.featurizer.arrow_batch_rows),
    )
    builder = builder.config("spark.python.daemon.module", "vidspark.worker")
    builder = builder.config(f"spark.executorEnv.{PRELOAD_ENV}",
                             preload_list(config.featurizer.backend if runs_model else None))
    # Spark keeps one daemon and pool of Python workers per distinct worker environment, and a
    # simplified traceback is one more variable in it, set for some Python functions (pandas
    # UDFs) and not others (mapInPandas): with it, an executor started two daemons and two sets
    # of workers, each importing the model's backend. Tracebacks from a Python function then
    # show PySpark's worker frames too.
    builder = builder.config("spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled", "false")
    for key, value in config.spark.items():
        builder = builder.config(key, _conf_value(value))
    spark = builder.getOrCreate()
    log.info("Spark session ready (Spark %s, master %s)", spark.version, spark.sparkContext.master)
    if config.storage.format == "delta":
        _check_delta(spark)
    return spark


def prepare_tables(spark: SparkSession, config: Config, tables=None, read_only: bool = False,
                   catalog: bool = True) -> None:
    """Register the vidspark tables by name (``tables``, ``read_only``: see
    ``storage.register_tables``), so SQL by table name works; ``catalog=False`` (the jobs,
    whose stages read tables by path): only make sure that every table exists with today's
    schema (``storage.ensure_tables``: a file check on a store that is up to date)."""
    from vidspark import storage

    started = time.perf_counter()
    if catalog:
        storage.register_tables(spark, config, tables, read_only)
        log.info("tables registered in %.1fs", time.perf_counter() - started)
    else:
        created = storage.ensure_tables(spark, config)
        log.info("tables ready in %.1fs%s", time.perf_counter() - started,
                 f" ({len(created)} created)" if created else "")


def build_spark(config: Config, app_name: str = "vidspark", tables=None,
                read_only: bool = False, runs_model: bool = False,
                catalog: bool = True) -> SparkSession:
    """``start_session`` then ``prepare_tables``: the session of a notebook, a report or a
    reader, with the tables registered by name."""
    spark = start_session(config, app_name, runs_model)
    prepare_tables(spark, config, tables, read_only, catalog)
    return spark


def _check_delta(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName(
            "io.delta.sql.DeltaSparkSessionExtension", True,
            jvm.Thread.currentThread().getContextClassLoader())
    except Exception:  # py4j wraps ClassNotFoundException
        raise RuntimeError(
            "Delta Lake is not on Spark's class path. Run spark-submit with "
            "'--properties-file conf/spark-defaults.conf' (or '--packages "
            f"{DELTA_PACKAGE}' and the Delta SQL extension settings), or run 'make install', "
            "which writes those defaults into the virtualenv's Spark.") from None


# Spark's own default logs at INFO, which buries the job's messages: WARN is the default here.
LOG4J2 = """# Written by vidspark: Spark logs at WARN; the vidspark job logs its own progress at INFO.
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# Tree ensembles broadcast their trees: Spark warns about every task binary over 1 MiB.
logger.dagscheduler.name = org.apache.spark.scheduler.DAGScheduler
logger.dagscheduler.level = error
# Start-up notices that need no action on a laptop or a batch node (loopback host name, the
# UI port taken by another job, no native Hadoop library) and plan-string truncation.
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.stringutils.name = org.apache.spark.util.SparkStringUtils
logger.stringutils.level = error
# The stages checkpoint locally on purpose; Spark warns when such an RDD is released, or when
# a cached block is computed twice by concurrent jobs (the parallel fits of the sweep).
logger.rdd.name = org.apache.spark.rdd
logger.rdd.level = error
logger.blockmanager.name = org.apache.spark.storage.BlockManager
logger.blockmanager.level = error
"""


def write_spark_defaults(conf_dir: str, cluster: bool = False) -> str:
    """Write ``spark-defaults.conf`` into ``conf_dir`` (e.g. ``$SPARK_HOME/conf``), and a
    WARN-level ``log4j2.properties`` unless the folder has one that vidspark did not write."""
    os.makedirs(conf_dir, exist_ok=True)
    path = os.path.join(conf_dir, "spark-defaults.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_spark_defaults(cluster))
    log4j = os.path.join(conf_dir, "log4j2.properties")
    if not os.path.exists(log4j) or _written_by_us(log4j):
        with open(log4j, "w", encoding="utf-8") as fh:
            fh.write(LOG4J2)
    return path


def _written_by_us(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().startswith("# Written by vidspark")


def pyspark_conf_dir() -> str:
    """The conf folder of the pip-installed Spark (where spark-submit looks by default)."""
    import pyspark

    return os.path.join(os.path.dirname(pyspark.__file__), "conf")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-jars", action="store_true",
                        help=f"resolve {DELTA_PACKAGE} once into {jars_dir()}")
    parser.add_argument("--write-spark-defaults", metavar="DIR", nargs="?", const="",
                        help="write spark-defaults.conf into DIR (default: pyspark's conf folder)")
    args = parser.parse_args(argv)
    if args.install_jars:
        jars = install_jars()
        print(f"{len(jars)} jars in {jars_dir()}: "
              + ", ".join(os.path.basename(j) for j in jars))
    if args.write_spark_defaults is not None:
        print(write_spark_defaults(args.write_spark_defaults or pyspark_conf_dir()))


if __name__ == "__main__":
    main()
