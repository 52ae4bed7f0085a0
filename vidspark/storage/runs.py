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
        self._stage_row(self._row(stage, "succeeded", report))

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
