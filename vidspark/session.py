"""The one place that builds a SparkSession.

Jobs never choose the master: ``spark-submit --master ...`` does (a plain ``python`` run defaults
to ``local[*]``). Delta Lake needs its jars on the driver's class path before the JVM starts, which
a builder running inside ``spark-submit`` cannot do; so the Delta settings live in
``spark-defaults.conf`` (written into the virtualenv's Spark by ``make install``, and committed as
``conf/spark-defaults.conf`` for clusters), and the builder sets them again for plain Python runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Mapping

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_VERSION = "4.1.0"
DELTA_PACKAGE = f"io.delta:delta-spark_4.1_2.13:{DELTA_VERSION}"


def spark_defaults() -> dict[str, str]:
    """Settings every vidspark Spark application needs, as ``spark-defaults.conf`` entries."""
    return {
        "spark.jars.packages": DELTA_PACKAGE,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }


def render_spark_defaults() -> str:
    lines = ["# Written by vidspark (python -m vidspark.session --write-spark-defaults DIR)."]
    lines += [f"{key} {value}" for key, value in spark_defaults().items()]
    return "\n".join(lines) + "\n"


def _conf_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_spark(config: Mapping, app_name: str = "vidspark") -> SparkSession:
    """Build (or get) the SparkSession for ``config`` and register the vidspark tables by name."""
    from vidspark import storage

    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_defaults().items():
        builder = builder.config(key, value)
    builder = builder.config(
        "spark.sql.execution.arrow.maxRecordsPerBatch",
        str(config["featurizer"]["arrow_batch_rows"]),
    )
    for key, value in config["spark"].items():
        builder = builder.config(key, _conf_value(value))
    spark = builder.getOrCreate()
    log.info("Spark session ready (Spark %s, master %s)", spark.version, spark.sparkContext.master)
    if config["storage"]["format"] == "delta":
        _check_delta(spark)
    started = time.perf_counter()
    storage.register_tables(spark, config)
    log.info("tables registered in %.1fs", time.perf_counter() - started)
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
"""


def write_spark_defaults(conf_dir: str) -> str:
    """Write ``spark-defaults.conf`` (and a WARN-level ``log4j2.properties`` when none exists)
    into ``conf_dir`` (e.g. ``$SPARK_HOME/conf``)."""
    os.makedirs(conf_dir, exist_ok=True)
    path = os.path.join(conf_dir, "spark-defaults.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_spark_defaults())
    log4j = os.path.join(conf_dir, "log4j2.properties")
    if not os.path.exists(log4j):
        with open(log4j, "w", encoding="utf-8") as fh:
            fh.write(LOG4J2)
    return path


def pyspark_conf_dir() -> str:
    """The conf folder of the pip-installed Spark (where spark-submit looks by default)."""
    import pyspark

    return os.path.join(os.path.dirname(pyspark.__file__), "conf")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-spark-defaults", metavar="DIR", nargs="?", const="",
                        help="write spark-defaults.conf into DIR (default: pyspark's conf folder)")
    args = parser.parse_args(argv)
    if args.write_spark_defaults is not None:
        print(write_spark_defaults(args.write_spark_defaults or pyspark_conf_dir()))


if __name__ == "__main__":
    main()
