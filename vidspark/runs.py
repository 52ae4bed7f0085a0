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
from vidspark.schemas import RUNS

log = logging.getLogger(__name__)

RUN = "run"   # the stage name of the row that describes the whole run


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class RunRecorder:
    """Records a job's run and its stages in ``runs``."""

    def __init__(self, spark: SparkSession, config: Mapping, run_id: str, job: str):
        self.spark, self.config, self.run_id, self.job = spark, config, run_id, job
        self.started = {RUN: _now()}
        self._write(RUN, "running")

    def _write(self, stage: str, status: str, report: Optional[Mapping] = None,
               error: Optional[str] = None) -> None:
        report = dict(report or {})
        ended = None if status == "running" else _now()
        details = {k: v for k, v in report.items()
                   if k not in ("read", "written", "skipped", "quarantined")}
        row = {"run_id": self.run_id, "job": self.job, "stage": stage,
               "started_at": self.started.get(stage, _now()), "ended_at": ended, "status": status,
               "rows_read": report.get("read"), "rows_written": report.get("written"),
               "rows_skipped": report.get("skipped"), "rows_quarantined": report.get("quarantined"),
               "details": json.dumps(details, default=str, sort_keys=True) if details else None,
               "error": error}
        storage.upsert(self.spark, self.config, "runs", self.spark.createDataFrame([row], RUNS))

    def start(self, stage: str) -> None:
        self.started[stage] = _now()
        self._write(stage, "running")

    def end(self, stage: str, report: Mapping) -> None:
        self._write(stage, "succeeded", report)

    def fail(self, stage: str, exc: BaseException) -> None:
        self._write(stage, "failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def finish(self, reports: Mapping[str, Mapping], error: Optional[BaseException] = None) -> None:
        total = {k: sum(int(r.get(k) or 0) for r in reports.values())
                 for k in ("read", "written", "skipped", "quarantined")}
        if error is None:
            self._write(RUN, "succeeded", total)
        else:
            self._write(RUN, "failed", total,
                        error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def mark_abandoned(spark: SparkSession, config: Mapping, run_id: str) -> int:
    """Mark the still-``running`` rows of a run that died as ``abandoned``."""
    rows = (storage.read(spark, config, "runs")
            .where((F.col("run_id") == run_id) & (F.col("status") == "running")))
    n = rows.count()
    if n:
        storage.upsert(spark, config, "runs",
                       rows.withColumn("status", F.lit("abandoned"))
                       .withColumn("ended_at", F.current_timestamp()))
    return n
