"""The ``runs`` table: what each job did, one row per stage plus one for the whole run.

Rows are written when a stage starts (status ``running``) and again when it ends (``succeeded``
or ``failed`` with the error), so a run that was killed leaves ``running`` rows behind; the next
run, taking over its lock, marks them ``abandoned``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Mapping, Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config
from vidspark.storage.schemas import RUNS

log = logging.getLogger(__name__)

RUN = "run"   # the stage name of the row that describes the whole run


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class RunRecorder:
    """Records a job's run and its stages in ``runs``: a ``running`` row for the run when it
    starts, a row per stage as it ends, and the run's final row at the end (appends, and one
    ``replaceWhere`` of the run's rows, so bookkeeping stays cheap)."""

    def __init__(self, spark: SparkSession, config: Config, run_id: str, job: str):
        self.spark, self.config, self.run_id, self.job = spark, config, run_id, job
        self.started = {RUN: _now()}
        self.rows: list[dict] = []
        storage.append(spark, config, "runs", self._frame([self._row(RUN, "running")]))

    def _row(self, stage: str, status: str, report: Optional[Mapping] = None,
             error: Optional[BaseException] = None) -> dict:
        report = dict(report or {})
        details = {k: v for k, v in report.items()
                   if k not in ("read", "written", "skipped", "quarantined")}
        return {"run_id": self.run_id, "job": self.job, "stage": stage,
                "started_at": self.started.get(stage, _now()),
                "ended_at": None if status == "running" else _now(), "status": status,
                "rows_read": report.get("read"), "rows_written": report.get("written"),
                "rows_skipped": report.get("skipped"),
                "rows_quarantined": report.get("quarantined"),
                "details": json.dumps(details, default=str, sort_keys=True) if details else None,
                "error": _message(error) if error is not None else None}

    def _frame(self, rows):
        return self.spark.createDataFrame(rows, RUNS)

    def start(self, stage: str) -> None:
        self.started[stage] = _now()

    def end(self, stage: str, report: Mapping) -> None:
        row = self._row(stage, "succeeded", report)
        self._stage_row(row)
        latest = latest_details(self.spark, self.config)
        if report.get("inputs") is not None:       # what the next run compares with
            latest[stage] = dict(json.loads(row["details"]), run_id=self.run_id)
        elif latest.pop(stage, None) is None:      # nothing to compare with: the next run works
            return
        storage.write_text(self.spark, _stages_path(self.config),
                           json.dumps(latest, sort_keys=True, default=str))

    def fail(self, stage: str, exc: BaseException) -> None:
        self._stage_row(self._row(stage, "failed", error=exc))

    def _stage_row(self, row: dict) -> None:
        self.rows.append(row)
        storage.append(self.spark, self.config, "runs", self._frame([row]))

    def finish(self, reports: Mapping[str, Mapping], error: Optional[BaseException] = None) -> None:
        total = {k: sum(int(r.get(k) or 0) for r in reports.values())
                 for k in ("read", "written", "skipped", "quarantined")}
        final = self._row(RUN, "succeeded" if error is None else "failed", total, error)
        storage.replace_run(self.spark, self.config, self._frame(self.rows + [final]), self.run_id)


def inputs_of(spark: SparkSession, config: Config, tables, **settings) -> Optional[dict]:
    """What a stage reads, as its last successful run can be compared with: the Delta versions
    of ``tables`` and ``settings`` (JSON-able values); None on a store without table versions
    (Parquet), where no run is ever taken as unchanged."""
    versions = storage.table_versions(spark, config, tables)
    if any(v is None for v in versions.values()):
        return None
    return {"tables": versions, **settings}


def settle(start: Optional[dict], end: Optional[dict], written=()) -> Optional[dict]:
    """What a run records as having read: the versions of the tables it only reads as they were
    when it started (before it read them: a change that lands while it runs is then seen as new
    by the next run), those of the tables it writes as they are at its end (its own commits), and
    the other values as at its end. None when either is None."""
    if start is None or end is None:
        return None
    tables = {t: (end if t in written else start)["tables"].get(t) for t in end["tables"]}
    return dict(end, tables=tables)


# What each stage's latest successful run read and said (its ``details``), beside the runs table
# in one small file, so that a night with nothing new reads no table to find out.
STAGES_FILE = "_vidspark_stages.json"


def _stages_path(config: Config) -> str:
    return f"{storage.root(config)}/tables/{STAGES_FILE}"


def latest_details(spark: SparkSession, config: Config) -> dict:
    """{stage: details of its latest successful run, with its ``run_id``}."""
    text = storage.read_text(spark, _stages_path(config))
    try:
        return json.loads(text) if text else {}
    except ValueError:            # damaged: as if there were none (stages then do their work)
        return {}


def unchanged_since(spark: SparkSession, config: Config, stage: str,
                    inputs: Optional[dict]) -> Optional[dict]:
    """The details of the latest successful run of ``stage`` when its recorded ``inputs`` are
    ``inputs`` (nothing it reads changed since: the stage has nothing to do), else None."""
    if inputs is None:
        return None
    details = latest_details(spark, config).get(stage)
    if not details or details.get("inputs") != json.loads(json.dumps(inputs)):
        return None
    return details


def _message(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def mark_abandoned(spark: SparkSession, config: Config, run_id: str) -> int:
    """Mark the still-``running`` row of a run that died as ``abandoned``."""
    rows = storage.read(spark, config, "runs").where(F.col("run_id") == run_id).localCheckpoint()
    n = rows.where(F.col("status") == "running").count()
    if n:
        abandoned = rows.withColumn(
            "status", F.when(F.col("status") == "running", "abandoned").otherwise(F.col("status")))
        abandoned = abandoned.withColumn(
            "ended_at", F.coalesce(F.col("ended_at"), F.current_timestamp()))
        storage.replace_run(spark, config, abandoned, run_id)
    return n
