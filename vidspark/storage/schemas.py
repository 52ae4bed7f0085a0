"""Table schemas: the contract documented in README.md. Every table is keyed by (video, second)
except ``videos`` (one row per input file, keyed by video) and ``models`` (one row per fit).

Only plain SQL types are stored (no Spark ML vectors), so any Delta reader (delta-rs, DuckDB,
Trino, Polars) reads every table; ML vectors are built inside train and score. Columns added
after a table was first written are appended at the end (``storage`` adds them to old tables).
"""
from pyspark.sql import types as T

FLOATS = T.ArrayType(T.FloatType())

VIDEOS = T.StructType([
    T.StructField("video", T.StringType(), False),
    T.StructField("path", T.StringType(), False),
    T.StructField("role", T.StringType(), False),            # train | score | train+score
    T.StructField("size", T.LongType(), True),
    T.StructField("mtime_ns", T.LongType(), True),            # file modification time when hashed
    T.StructField("content_hash", T.StringType(), True),     # sha256 of the file's bytes
    T.StructField("fps", T.DoubleType(), True),              # from the container header
    T.StructField("width", T.IntegerType(), True),
    T.StructField("height", T.IntegerType(), True),
    T.StructField("duration", T.DoubleType(), True),         # seconds: last decoded timestamp
    T.StructField("frame_count", T.LongType(), True),        # frames actually decoded
    T.StructField("header_frame_count", T.LongType(), True), # what the header claims (an estimate)
    T.StructField("seconds", T.IntegerType(), True),         # frames extracted (one per second)
    T.StructField("status", T.StringType(), False),          # ok | quarantined
    T.StructField("error", T.StringType(), True),
    T.StructField("processed_at", T.TimestampType(), True),
    T.StructField("missing_since", T.TimestampType(), True),  # set while the file is gone
    T.StructField("camera", T.StringType(), True),            # input.camera of the video's name
])

FRAMES = T.StructType([
    T.StructField("video", T.StringType(), False),
    T.StructField("second", T.IntegerType(), False),
    T.StructField("ts_ms", T.DoubleType(), False),           # decoded timestamp, relative to the first frame
    T.StructField("frame_name", T.StringType(), False),      # <file stem>frame<NNNN>.jpg
    T.StructField("jpeg", T.BinaryType(), False),
    T.StructField("width", T.IntegerType(), False),
    T.StructField("height", T.IntegerType(), False),
    T.StructField("camera", T.StringType(), True),
])

MOTION = T.StructType([    # per-second motion, computed while the frames are decoded (vidspark.media.motion)
    T.StructField("video", T.StringType(), False),
    T.StructField("second", T.IntegerType(), False),
    T.StructField("camera", T.StringType(), True),
    T.StructField("motion", FLOATS, False),                 # vidspark.media.motion.FEATURE_NAMES, in order
    T.StructField("pairs", T.IntegerType(), False),          # frame pairs measured inside the second
    T.StructField("thumb", T.BinaryType(), False),           # 32x24 grayscale thumbnail, row-major
    T.StructField("motion_version", T.StringType(), False),  # algorithm, width and rate
])

FEATURES = T.StructType([
    T.StructField("video", T.StringType(), False),
    T.StructField("second", T.IntegerType(), False),
    T.StructField("features", FLOATS, False),                # 2048 InceptionV3 pooled activations
    T.StructField("weights", T.StringType(), False),         # identity of the weights used
    T.StructField("camera", T.StringType(), True),
    # the second whose frame was embedded: this one, or an earlier one of the same video when
    # this second showed nothing new (featurizer.skip_unchanged); null: written before it existed
    T.StructField("embedded_second", T.IntegerType(), True),
])

#: ``labels.source`` prefix of the labels that come from reviewers' verdicts
REVIEW_SOURCE = "review:"

LABELS = T.StructType([
    T.StructField("video", T.StringType(), False),
    T.StructField("second", T.IntegerType(), False),
    T.StructField("label", T.IntegerType(), False),
    T.StructField("source", T.StringType(), False),          # where the label came from
])

PREDICTIONS = T.StructType([
    T.StructField("video", T.StringType(), False),
    T.StructField("second", T.IntegerType(), False),
    T.StructField("frame_name", T.StringType(), False),
    T.StructField("prob_suspicious", T.DoubleType(), False),
    T.StructField("prediction", T.IntegerType(), False),
    T.StructField("model_id", T.StringType(), False),         # <registered model name>/<version>
    T.StructField("scored_at", T.TimestampType(), False),
    T.StructField("model_version", T.LongType(), True),      # registered version that scored it
    T.StructField("camera", T.StringType(), True),
    T.StructField("feature_set", T.StringType(), True),      # the champion's feature set
    T.StructField("anomaly_score", T.DoubleType(), True),    # label-free, per camera (vidspark.stages.feature_sets)
])

MODELS = T.StructType([   # a mirror of the MLflow registry's versions of the model
    T.StructField("model_id", T.StringType(), False),         # <registered model name>/<version>
    T.StructField("path", T.StringType(), False),             # models:/<name>/<version>
    T.StructField("created_at", T.TimestampType(), False),
    T.StructField("weights", T.StringType(), False),
    T.StructField("params", T.StringType(), False),           # JSON of the chosen LogisticRegression parameters
    T.StructField("train_rows", T.LongType(), False),
    T.StructField("positives", T.LongType(), False),
    T.StructField("train_videos", T.LongType(), False),
    T.StructField("data_fingerprint", T.StringType(), False),  # of the labelled rows and train settings
    T.StructField("model_name", T.StringType(), True),
    T.StructField("model_version", T.LongType(), True),
    T.StructField("run_id", T.StringType(), True),             # the MLflow run that trained it
    T.StructField("threshold", T.DoubleType(), True),          # operating threshold used for `prediction`
    T.StructField("area_under_pr", T.DoubleType(), True),      # grouped cross-validation mean
    T.StructField("area_under_roc", T.DoubleType(), True),
    T.StructField("champion", T.BooleanType(), True),          # holds the champion alias (as of the last run)
    T.StructField("decision", T.StringType(), True),           # why it did or did not become champion
    T.StructField("feature_set", T.StringType(), True),        # e.g. motion, motion+change
    T.StructField("model_type", T.StringType(), True),         # random_forest | gbt | logistic_regression
    T.StructField("motion_version", T.StringType(), True),     # of the motion features it was trained on
])

SEGMENTS = T.StructType([  # consecutive flagged seconds of one video (see vidspark.stages.segments)
    T.StructField("segment_id", T.StringType(), False),      # stable: video, start and model
    T.StructField("video", T.StringType(), False),
    T.StructField("start_second", T.IntegerType(), False),
    T.StructField("end_second", T.IntegerType(), False),
    T.StructField("seconds", T.IntegerType(), False),         # end - start + 1, gaps included
    T.StructField("flagged_seconds", T.LongType(), False),
    T.StructField("peak_prob", T.DoubleType(), False),
    T.StructField("mean_prob", T.DoubleType(), False),        # over the flagged seconds
    T.StructField("peak_second", T.IntegerType(), False),
    T.StructField("peak_frame_name", T.StringType(), False),
    T.StructField("model_id", T.StringType(), False),
    T.StructField("model_version", T.LongType(), True),
    T.StructField("computed_at", T.TimestampType(), False),
])

REVIEWS = T.StructType([   # reviewer verdicts (see vidspark.review); one row per target and reviewer
    T.StructField("review_id", T.StringType(), False),       # stable: target and reviewer
    T.StructField("segment_id", T.StringType(), True),       # the reviewed segment (null: one second)
    T.StructField("video", T.StringType(), False),
    T.StructField("start_second", T.IntegerType(), False),   # seconds the verdict covers
    T.StructField("end_second", T.IntegerType(), False),
    T.StructField("verdict", T.StringType(), False),         # confirmed | rejected
    T.StructField("reviewer", T.StringType(), False),
    T.StructField("reviewed_at", T.TimestampType(), False),
    T.StructField("model_id", T.StringType(), True),          # the model whose output was reviewed
    T.StructField("model_version", T.LongType(), True),
    T.StructField("note", T.StringType(), True),
])

RUNS = T.StructType([
    T.StructField("run_id", T.StringType(), False),
    T.StructField("job", T.StringType(), False),
    T.StructField("stage", T.StringType(), False),           # a stage, or "run" for the whole run
    T.StructField("started_at", T.TimestampType(), False),
    T.StructField("ended_at", T.TimestampType(), True),
    T.StructField("status", T.StringType(), False),          # running | succeeded | failed | abandoned
    T.StructField("rows_read", T.LongType(), True),
    T.StructField("rows_written", T.LongType(), True),
    T.StructField("rows_skipped", T.LongType(), True),
    T.StructField("rows_quarantined", T.LongType(), True),
    T.StructField("details", T.StringType(), True),          # JSON of the stage's other figures
    T.StructField("error", T.StringType(), True),
])

TABLES_NAMES = ("videos", "frames", "motion", "features", "labels", "predictions", "segments",
                "reviews", "models", "runs")

TABLES = {
    "videos": VIDEOS,
    "frames": FRAMES,
    "motion": MOTION,
    "features": FEATURES,
    "labels": LABELS,
    "predictions": PREDICTIONS,
    "segments": SEGMENTS,
    "reviews": REVIEWS,
    "models": MODELS,
    "runs": RUNS,
}
