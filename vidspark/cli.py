"""Command-line entry points: parse arguments, load config, build the session, call the library."""
from __future__ import annotations

import argparse
import csv
import functools
import logging
import sys
import time
from typing import Sequence

from vidspark.config import ConfigError, load_config
from vidspark.errors import user_error, VidsparkError


def _parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="environment config, e.g. conf/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (repeatable)")
    return parser


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_errors(prog: str):
    """Decorate an entry point: a ``VidsparkError`` (or a missing file) ends it with one line,
    ``<prog>: <message>``, and exit status 1, after the entry point's own clean-up ran; any
    other exception is a bug and keeps its traceback."""
    def decorate(fn):
        @functools.wraps(fn)
        def entry(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                message = user_error(exc)
                if message is None:
                    raise
                if isinstance(exc, ConfigError):
                    message = f"configuration error: {message}"
                sys.exit(f"{prog}: {message}")
        return entry
    return decorate


def _load(args) -> dict:
    return load_config(args.config, args.overrides)


@user_errors("vidspark")
def job_main(stages: Sequence[str], description: str, argv=None, prog: str | None = None) -> None:
    """Entry point of the ``jobs/*.py`` scripts: run ``stages`` in order, holding the storage
    lock and recording the run in the ``runs`` table. The JVM starts while this process loads
    the stages' modules and asks MLflow for the champion (a score job), so those seconds
    overlap."""
    from concurrent.futures import ThreadPoolExecutor

    from vidspark.session import prepare_tables, start_session
    from vidspark.storage import runs
    from vidspark.storage.lock import StorageLock

    started = time.perf_counter()
    args = _parser(description, prog).parse_args(argv)
    _setup_logging()
    config = _load(args)
    job = "nightly" if list(stages) == JOBS["nightly"][0] else "+".join(stages)
    run_id = runs.new_run_id()
    from vidspark import pipeline

    pipeline.preflight(config, stages, champion=False)   # files and folders: before anything
    lock = StorageLock(config, run_id).acquire()
    spark = None
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="vidspark-spark") as pool:
            session = pool.submit(start_session, config, f"vidspark-{job}",
                                  "featurize" in stages)
            try:
                if list(stages)[:1] == ["score"]:
                    pipeline.require_champion(config)     # no model: nothing to do
                for name in stages:                       # the stages' modules, meanwhile
                    pipeline.stage(name)
            finally:
                spark = session.result()
        spark.sparkContext.setLogLevel("WARN")
        prepare_tables(spark, config, catalog=False)
        logging.getLogger("vidspark").info("Spark session and tables ready in %.1fs",
                                           time.perf_counter() - started)
        if lock.abandoned and lock.abandoned.get("run_id"):
            runs.mark_abandoned(spark, config, lock.abandoned["run_id"])
        recorder = runs.RunRecorder(spark, config, run_id, job)
        reports = {}
        try:
            pipeline.prerequisites(spark, config, stages[0])
            reports = pipeline.run_stages(spark, config, stages, recorder)
        except Exception as exc:
            recorder.finish(reports, exc)
            raise
        recorder.finish(reports)
        log = logging.getLogger("vidspark")
        log.info("run %s (%s) succeeded: %s", run_id, job, pipeline.one_line(reports))
        if "score" in stages:
            since = {r.get("unchanged_since") for r in reports.values()}
            if None in since:
                print(pipeline.summary(spark, config), flush=True)
            else:                     # no stage had anything to do: the last summary stands
                print(f"nothing new since run {max(since)}: the tables and the ranking are as "
                      "it left them (vidspark sql shows them)", flush=True)
    finally:
        if spark is not None:
            spark.stop()
        lock.release()


@user_errors("vidspark sql")
def sql_main(argv=None, prog: str | None = None) -> None:
    """``vidspark sql --config conf/x.yaml "SELECT ..."``: run a query, print CSV with a header.
    Through a running ``vidspark sql-server`` of the same store when one answers (about a
    second), else in a Spark session of its own."""
    parser = _parser("Run SQL against the vidspark tables and print CSV (through a running "
                     "`vidspark sql-server` of the same store when there is one).", prog)
    parser.add_argument("query", help="SQL; tables: videos, frames, motion, features, labels, "
                                      "predictions, segments, reviews, models, runs; views: "
                                      "segments_tonight, segments_to_review, "
                                      "video_suspicious_seconds, camera_daily_counts, "
                                      "camera_anomalies")
    parser.add_argument("--no-server", action="store_true",
                        help="start Spark here even when a sql-server runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = _load(args)
    writer = csv.writer(sys.stdout, lineterminator="\n")

    def write(columns, rows) -> None:
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v.hex() if isinstance(v, (bytes, bytearray))
                             else v for v in row])
        sys.stdout.flush()

    if not args.no_server:
        from vidspark import sqlserver

        conn = sqlserver.connect(config)
        if conn is not None:
            try:
                write(*sqlserver.query(conn, args.query))
            finally:
                conn.close()
            return
    from vidspark import sqlserver, storage
    from vidspark.session import QUICK_COMPILER, build_spark

    # A short-lived reader: no UI, the JVM's quick compiler only (a few seconds less to answer),
    # small Delta snapshots in one partition; the config's own settings win. Read-only like the
    # server (its check needs `make install`; without it only queries are let through).
    checked = sqlserver.has_read_only_extension()
    if not checked and not _looks_read_only(args.query):
        raise VidsparkError("only queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, VALUES) run "
                            "here; the jobs change the tables")
    quick = {"spark.ui.enabled": "false", "spark.driver.extraJavaOptions": QUICK_COMPILER}
    config = config.with_spark({**quick, **config.spark,
                                **(sqlserver.read_only_settings(config) if checked else {}),
                                "spark.databricks.delta.snapshotPartitions": "1"})
    spark = build_spark(config, app_name="vidspark-sql", tables=storage.names_in(args.query),
                        read_only=True)
    spark.sparkContext.setLogLevel("ERROR")
    if checked:
        sqlserver.enable_read_only(spark)
    try:
        df = spark.sql(args.query)
        write(df.columns, df.toLocalIterator())
    except Exception as exc:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        if isinstance(exc, PySparkException):
            raise VidsparkError(str(exc).splitlines()[0]) from None
        if isinstance(exc, Py4JJavaError):     # e.g. the read-only check's refusal
            raise VidsparkError(str(exc.java_exception.getMessage()).splitlines()[0]) from None
        raise
    finally:
        spark.stop()


def _looks_read_only(query: str) -> bool:
    """Whether a statement starts like a query (the fallback when the read-only check is not
    installed; comments are skipped)."""
    import re

    text = re.sub(r"(--[^\n]*\n?|/\*.*?\*/)", " ", query, flags=re.S)
    text = re.sub(r"'(\\.|[^'])*'|`[^`]*`", "''", text).strip().lower()   # no literals, names
    writes = (r"\b(insert|update|delete|merge|create|drop|alter|truncate|optimize|vacuum|restore|"
              r"convert|cache|uncache|refresh|msck|analyze|set|reset|add|load|reflect|"
              r"java_method|try_reflect)\b")
    return (re.match(r"(select|with|show|describe|desc|explain|values|\()", text) is not None
            and re.search(writes, text) is None and ";" not in text.rstrip(";"))


@user_errors("vidspark review")
def review_main(argv=None, prog: str | None = None) -> None:
    """``vidspark review --config conf/x.yaml --segment ID --verdict rejected``: record a verdict
    (or ``--list``: print the segments still to review as CSV)."""
    parser = _parser("Record a reviewer's verdict on a flagged segment or second, or list the "
                     "segments to review.", prog)
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
        row = review.record(spark, config, args.verdict, segment_id=args.segment,
                            video=args.video, second=args.second, reviewer=args.reviewer,
                            note=args.note)
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


@user_errors("vidspark")
def report_main(argv=None, prog: str | None = None) -> None:
    """``spark-submit jobs/report.py --config conf/x.yaml [--out FILE] [--top N]``: write the
    night's self-contained HTML report (read-only: takes no storage lock)."""
    parser = _parser("Write the self-contained HTML report of the night's suspicious segments.",
                     prog)
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
    finally:
        spark.stop()
    print(path, flush=True)


@user_errors("vidspark sql-server")
def sql_server_main(argv=None, prog: str | None = None) -> None:
    """``vidspark sql-server --config conf/x.yaml``: serve the tables read-only until stopped."""
    parser = _parser("Serve the vidspark tables and views read-only over JDBC/ODBC (Spark Thrift "
                     "Server) until stopped (Ctrl-C or SIGTERM); e.g. --set sql_server.port=10001.",
                     prog)
    args = parser.parse_args(argv)
    _setup_logging()
    config = _load(args)
    from vidspark import sqlserver

    sqlserver.serve(config)


# ---------------------------------------------------------------- the `vidspark` command

#: The jobs (the `vidspark` commands and jobs/*.py): their stages and what they do.
JOBS = {
    "nightly": (["extract", "labels", "featurize", "train", "score"],
                "The nightly job: extract frames from both input folders, import labels, "
                "featurize, train, score."),
    "extract": (["extract"], "Extract one frame per second (and motion) from new videos."),
    "labels": (["labels"], "Import the labels file and reviewers' verdicts."),
    "featurize": (["featurize"], "Compute InceptionV3 features of frames that have none."),
    "train": (["labels", "train"], "Import the labels, cross-validate the sweep, register the "
                                   "best model, decide the champion."),
    "score": (["score"], "Score the score videos with the champion and refresh the segments."),
}

_COMMANDS = {
    **{name: doc for name, (_, doc) in JOBS.items()},
    "report": "Write the night's self-contained HTML report.",
    "sql": "Run SQL against the tables (through a running sql-server when there is one).",
    "sql-server": "Serve the tables read-only over JDBC/ODBC (Spark Thrift Server) on localhost.",
    "review": "Record a reviewer's verdict, or list the segments to review.",
    "eval": "Camera-grouped evaluation on a labelled dataset (make eval).",
    "bench": "The benchmarks (make bench).",
    "demo-data": "Generate the built-in demo videos and labels.",
}

_SPARK_COMMANDS = {*JOBS, "report", "sql", "sql-server", "review", "eval", "bench"}

_USAGE = """usage: vidspark [--master URL] [--conf KEY=VALUE ...] COMMAND [ARGS ...]

Run a vidspark command. Spark comes from this installation (no virtualenv needs to be
activated); --master and --conf go to Spark as spark-submit would take them (default master:
local[*]). On a cluster, submit the jobs/*.py files with spark-submit instead.

commands:
{commands}

`vidspark COMMAND --help` shows a command's own options.
"""


def _spark_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``--master URL`` / ``--conf K=V`` (anywhere, also ``--master=URL``) from the rest."""
    spark, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in ("--master", "--conf"):
            if "=" in arg and arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                sys.exit(f"vidspark: {name} needs a value")
            if name == "--conf" and "=" not in value:
                sys.exit(f"vidspark: --conf needs KEY=VALUE (a Spark setting), not {value!r}")
            spark += [name, value]
        else:
            rest.append(arg)
        i += 1
    return spark, rest


def _use_this_spark(options: list[str]) -> None:
    """Make the Spark that this process (or its workers) starts the one installed beside this
    Python, with ``options``: what ``spark-submit`` would do, without an activated virtualenv."""
    import os
    import shlex

    from pyspark.find_spark_home import _find_spark_home

    os.environ.pop("SPARK_HOME", None)             # another Spark of the user's shell
    os.environ["SPARK_HOME"] = _find_spark_home()  # ... gives way to the one beside pyspark
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.pop("PYSPARK_DRIVER_PYTHON", None)
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if options:
        os.environ["PYSPARK_SUBMIT_ARGS"] = " ".join(shlex.quote(o) for o in options) + " pyspark-shell"


def main(argv=None) -> None:
    """``vidspark COMMAND ...``: one command for every job and tool."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options, rest = _spark_options(argv)
    commands = "\n".join(f"  {name:<11} {doc}" for name, doc in _COMMANDS.items())
    if not rest or rest[0] in ("-h", "--help"):
        print(_USAGE.format(commands=commands), end="")
        sys.exit(0 if rest else 2)
    command, args = rest[0], rest[1:]
    if command not in _COMMANDS:
        sys.exit(f"vidspark: unknown command '{command}' (commands: {', '.join(_COMMANDS)})")
    if options and command not in _SPARK_COMMANDS:
        sys.exit(f"vidspark {command}: does not start Spark; --master/--conf do not apply")
    if command in _SPARK_COMMANDS:
        _use_this_spark(options)
    prog = f"vidspark {command}"
    if command in JOBS:
        stages, doc = JOBS[command]
        job_main(stages, doc, args, prog=prog)
    elif command == "report":
        report_main(args, prog=prog)
    elif command == "sql":
        sql_main(args, prog=prog)
    elif command == "sql-server":
        sql_server_main(args, prog=prog)
    elif command == "review":
        review_main(args, prog=prog)
    elif command == "eval":
        from vidspark_bench import evaluate

        evaluate.main(args, prog=prog)
    elif command == "bench":
        from vidspark_bench import bench

        bench.main(args, prog=prog)
    elif command == "demo-data":
        import vidspark_demo as demo

        demo.main(args, prog=prog)
