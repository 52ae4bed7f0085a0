"""Command-line entry points: parse arguments, load config, build the session, call the library."""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from typing import Sequence

from vidspark.config import ConfigError, load_config


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="environment config, e.g. conf/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (repeatable)")
    return parser


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(args) -> dict:
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        sys.exit(f"vidspark: configuration error: {exc}")


def job_main(stages: Sequence[str], description: str, argv=None) -> None:
    """Entry point of the ``jobs/*.py`` scripts: run ``stages`` in order, holding the storage
    lock and recording the run in the ``runs`` table."""
    from vidspark import pipeline, runs
    from vidspark.errors import user_error
    from vidspark.lock import LockHeld, StorageLock
    from vidspark.session import build_spark

    args = _parser(description).parse_args(argv)
    _setup_logging()
    config = _load(args)
    job = "nightly" if list(stages) == list(pipeline.STAGES) else "+".join(stages)
    run_id = runs.new_run_id()
    try:
        pipeline.preflight(config, stages)
        lock = StorageLock(config, run_id).acquire()
    except ConfigError as exc:
        sys.exit(f"vidspark: configuration error: {exc}")
    except LockHeld as exc:
        sys.exit(f"vidspark: {exc}")
    spark = None
    try:
        spark = build_spark(config, app_name=f"vidspark-{job}")
        spark.sparkContext.setLogLevel("WARN")
        if lock.abandoned and lock.abandoned.get("run_id"):
            runs.mark_abandoned(spark, config, lock.abandoned["run_id"])
        recorder = runs.RunRecorder(spark, config, run_id, job)
        reports = {}
        try:
            reports = pipeline.run_stages(spark, config, stages, recorder)
        except Exception as exc:
            recorder.finish(reports, exc)
            message = user_error(exc)
            if message is None:
                raise
            sys.exit(f"vidspark: {message}")
        recorder.finish(reports)
        log = logging.getLogger("vidspark")
        log.info("run %s (%s) succeeded: %s", run_id, job, pipeline.one_line(reports))
        if "score" in stages:
            print(pipeline.summary(spark, config), flush=True)
    finally:
        if spark is not None:
            spark.stop()
        lock.release()


def sql_main(argv=None) -> None:
    """``vidspark-sql --config conf/x.yaml "SELECT ..."``: run a query, print CSV with a header."""
    parser = _parser("Run SQL against the vidspark tables and print CSV.")
    parser.add_argument("query", help="SQL; tables: videos, frames, features, labels, "
                                      "predictions, models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = _load(args)
    from vidspark.session import build_spark

    spark = build_spark(config, app_name="vidspark-sql")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.sql(args.query)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(df.columns)
        for row in df.toLocalIterator():
            writer.writerow(["" if v is None else v.hex() if isinstance(v, (bytes, bytearray))
                             else v for v in row])
        sys.stdout.flush()
    except Exception as exc:
        from pyspark.errors import PySparkException

        if isinstance(exc, PySparkException):
            sys.exit(f"vidspark-sql: {str(exc).splitlines()[0]}")
        raise
    finally:
        spark.stop()
