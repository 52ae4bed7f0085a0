"""Command-line entry points: parse arguments, load config, build the session, call the library."""
from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
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

    started = time.perf_counter()
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
        logging.getLogger("vidspark").info("Spark session and tables ready in %.1fs",
                                           time.perf_counter() - started)
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
    parser.add_argument("query", help="SQL; tables: videos, frames, motion, features, labels, "
                                      "predictions, segments, reviews, models, runs; views: "
                                      "segments_tonight, segments_to_review, "
                                      "video_suspicious_seconds, camera_daily_counts, "
                                      "camera_anomalies")
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


def review_main(argv=None) -> None:
    """``vidspark-review --config conf/x.yaml --segment ID --verdict rejected``: record a verdict
    (or ``--list``: print the segments still to review as CSV)."""
    parser = _parser("Record a reviewer's verdict on a flagged segment or second, or list the "
                     "segments to review.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--segment", metavar="ID", help="segment_id (see --list)")
    target.add_argument("--video", help="video (with --second): a verdict on one second")
    target.add_argument("--list", action="store_true",
                        help="print the segments still to review (CSV), best first")
    parser.add_argument("--second", type=int, help="the second of --video")
    parser.add_argument("--verdict", choices=("confirmed", "rejected"))
    parser.add_argument("--reviewer", help="who reviewed (default: $VIDSPARK_REVIEWER or the user)")
    parser.add_argument("--note", help="free text stored with the verdict")
    parser.add_argument("--top", type=int, default=20, help="rows printed by --list (default 20)")
    args = parser.parse_args(argv)
    if not args.list and args.verdict is None:
        parser.error("--verdict is required with --segment or --video")
    if args.video is not None and args.second is None:
        parser.error("--video needs --second")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = _load(args)
    from vidspark import review
    from vidspark.session import build_spark

    spark = build_spark(config, app_name="vidspark-review")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if args.list:
            table = review.ranking(spark, config, args.top)
            columns = ["segment_id", "video", "start_second", "end_second", "peak_prob",
                       "peak_second", "peak_label", "verdict", "model_id"]
            writer.writerow(columns)
            for row in table[columns].itertuples(index=False):
                writer.writerow([_cell(v) for v in row])
            return
        try:
            row = review.record(spark, config, args.verdict, segment_id=args.segment,
                                video=args.video, second=args.second, reviewer=args.reviewer,
                                note=args.note)
        except review.ReviewError as exc:
            sys.exit(f"vidspark-review: {exc}")
        columns = ["review_id", "segment_id", "video", "start_second", "end_second", "verdict",
                   "reviewer", "reviewed_at"]
        writer.writerow(columns)
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    finally:
        spark.stop()


def _cell(value):
    """A CSV cell: empty for None, NaN and pandas' NA."""
    import pandas as pd

    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return ""
    return value


def report_main(argv=None) -> None:
    """``spark-submit jobs/report.py --config conf/x.yaml [--out FILE] [--top N]``: write the
    night's self-contained HTML report (read-only: takes no storage lock)."""
    parser = _parser("Write the self-contained HTML report of the night's suspicious segments.")
    parser.add_argument("--out", help="HTML file to write (default: <storage.root>/reports/"
                                      "vidspark-report-<date>.html)")
    parser.add_argument("--top", type=int, default=10, help="segment cards (default 10)")
    args = parser.parse_args(argv)
    _setup_logging()
    config = _load(args)
    from vidspark import report
    from vidspark.session import build_spark

    spark = build_spark(config, app_name="vidspark-report")
    spark.sparkContext.setLogLevel("WARN")
    try:
        path = report.write(spark, config, args.out, args.top, config_hint=args.config)
    except ValueError as exc:
        sys.exit(f"vidspark: {exc}")
    finally:
        spark.stop()
    print(path, flush=True)
