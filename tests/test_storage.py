"""Idempotent writes on real Delta and Parquet tables, and registration by name."""
import os
import shutil

import pytest
from pyspark.sql import functions as F

from vidspark import storage
from tests.conftest import make_config

@pytest.fixture(params=["delta", "parquet"])
def cfg(request, spark, tmp_path):
    config = make_config(tmp_path, fmt=request.param)
    storage.register_tables(spark, config)
    yield config

def rows(spark, cfg, name="frames"):
    return sorted((r.video, r.second, bytes(r.jpeg)) for r in storage.read(spark, cfg, name).collect())

def test_replace_videos_is_idempotent(spark, cfg):
    from vidspark.storage.schemas import FRAMES

    def df(video, seconds, tag):
        return spark.createDataFrame([(video, s, 0.0, "n", tag, 4, 3, "c") for s in seconds], FRAMES)

    storage.replace_videos(spark, cfg, "frames", df("a", [0, 1, 2], b"1"), ["a"])
    storage.replace_videos(spark, cfg, "frames", df("b", [0], b"1"), ["b"])
    storage.replace_videos(spark, cfg, "frames", df("a", [0, 1, 2], b"1"), ["a"])   # re-run
    assert len(rows(spark, cfg)) == 4
    # a changed video with fewer seconds replaces all of its rows, others are untouched
    storage.replace_videos(spark, cfg, "frames", df("a", [0, 1], b"2"), ["a"])
    assert rows(spark, cfg) == [("a", 0, b"2"), ("a", 1, b"2"), ("b", 0, b"1")]
    # an empty DataFrame deletes the listed videos
    storage.replace_videos(spark, cfg, "frames", spark.createDataFrame([], FRAMES), ["b"])
    assert rows(spark, cfg) == [("a", 0, b"2"), ("a", 1, b"2")]
    # and the table is visible by name
    assert spark.sql("SELECT count(*) AS n FROM frames").first().n == 2

def test_upsert_merges_on_the_key(spark, cfg):
    from vidspark.storage.schemas import FRAMES

    def df(items):
        return spark.createDataFrame([(v, s, 0.0, "n", t, 4, 3, "c") for v, s, t in items], FRAMES)

    storage.upsert(spark, cfg, "frames", df([("a", 0, b"1"), ("a", 1, b"1")]))
    storage.upsert(spark, cfg, "frames", df([("a", 1, b"2"), ("b", 0, b"1")]))
    storage.upsert(spark, cfg, "frames", df([("a", 1, b"2"), ("b", 0, b"1")]))   # re-run
    assert rows(spark, cfg) == [("a", 0, b"1"), ("a", 1, b"2"), ("b", 0, b"1")]

def test_tables_survive_reregistration(spark, cfg, tmp_path):
    from vidspark.storage.schemas import FRAMES

    storage.replace_videos(spark, cfg, "frames",
                           spark.createDataFrame([("a", 0, 0.0, "n", b"1", 4, 3, "c")], FRAMES), ["a"])
    other = make_config(tmp_path / "other", fmt=cfg.storage.format)
    storage.register_tables(spark, other)            # names now point elsewhere
    assert spark.sql("SELECT count(*) AS n FROM frames").first().n == 0
    storage.register_tables(spark, cfg)              # and back: nothing was lost
    assert spark.table("frames").where(F.col("video") == "a").count() == 1


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_a_store_from_before_cameras_and_array_features_is_migrated_in_place(spark, tmp_path, fmt):
    """An older vidspark stored features as Spark ML vectors (which other Delta readers refuse)
    and had no camera columns: registering the tables converts the vectors to array<float> in
    one commit and adds the columns, keeping every row."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T

    config = make_config(tmp_path, fmt=fmt)
    old = T.StructType([T.StructField("video", T.StringType(), False),
                        T.StructField("second", T.IntegerType(), False),
                        T.StructField("features", VectorUDT(), False),
                        T.StructField("weights", T.StringType(), False)])
    rows_ = [("a", s, Vectors.dense([float(s), 0.5, -1.0]), "w") for s in range(3)]
    writer = spark.createDataFrame(rows_, old).write.mode("overwrite")
    if fmt == "delta":
        writer.format("delta").save(storage.table_path(config, "features"))
    else:
        writer.partitionBy("video").parquet(storage.table_path(config, "features"))
    storage.register_tables(spark, config)
    features = storage.read(spark, config, "features")
    assert features.schema["features"].dataType == T.ArrayType(T.FloatType())
    got = sorted((r.video, r.second, list(r.features), r.weights, r.camera) for r in features.collect())
    assert got == [("a", s, [float(s), 0.5, -1.0], "w", None) for s in range(3)]
    assert spark.sql("SELECT count(*) AS n FROM features").first().n == 3
    if fmt == "delta":
        from deltalake import DeltaTable

        table = DeltaTable(storage.table_path(config, "features")).to_pyarrow_table()
        assert table.num_rows == 3 and str(table.schema.field("features").type) == "list<element: float>"
        storage.register_tables(spark, config)          # nothing left to migrate: no new commit
        assert storage.table_version(spark, config, "features") == 2   # write, migrate, add camera


def test_a_job_trusts_a_store_whose_stamp_names_todays_schemas(spark, tmp_path):
    """``ensure_tables`` creates and stamps a fresh store; on a stamped store it only checks that
    each table's log exists (a table removed by hand comes back empty); a stamp of other schemas
    brings every table up to date again. Table versions come from the log listing, and a stage
    records those it only reads as they were when it started."""
    config = make_config(tmp_path)
    assert storage.ensure_tables(spark, config) == set(storage.TABLES)
    stamp = os.path.join(storage.root(config), "tables", storage.SCHEMA_STAMP)
    assert open(stamp).read() == storage.schema_fingerprint()
    assert storage.ensure_tables(spark, config) == set()
    shutil.rmtree(storage.table_path(config, "segments"))
    assert storage.ensure_tables(spark, config) == {"segments"}
    with open(stamp, "w") as fh:
        fh.write("an older vidspark")
    assert storage.ensure_tables(spark, config) == set()       # checked, nothing to create
    assert open(stamp).read() == storage.schema_fingerprint()
    from delta.tables import DeltaTable

    runs = DeltaTable.forPath(spark, storage.table_path(config, "runs"))
    assert runs.detail().first().properties["delta.checkpointInterval"] == "100"
    before = storage.table_versions(spark, config, ["frames", "runs"])
    spark.sql(f"ALTER TABLE delta.`{storage.table_path(config, 'frames')}` "
              "SET TBLPROPERTIES ('vidspark.test' = 'a commit')")
    after = storage.table_versions(spark, config, ["frames", "runs"])
    assert after == {"frames": before["frames"] + 1, "runs": before["runs"]}
    assert after["frames"] == storage.table_version(spark, config, "frames")
    parquet = make_config(tmp_path / "p", fmt="parquet")
    assert storage.table_versions(spark, parquet, ["frames"]) == {"frames": None}
    storage.ensure_tables(spark, parquet)
    assert storage.ensure_tables(spark, parquet) == set()      # nothing reported created twice
    # What a stage records having read: the tables it only reads as they were when it started (a
    # commit by another job meanwhile is new to its next run), the table it writes as it left it.
    from vidspark.storage import runs as R

    def read():
        return R.inputs_of(spark, config, ("frames", "labels"), setting=1)

    start = read()
    for name in ("frames", "labels"):
        spark.sql(f"ALTER TABLE delta.`{storage.table_path(config, name)}` "
                  "SET TBLPROPERTIES ('vidspark.test' = 'another commit')")
    assert R.settle(start, read(), ("labels",)) == {
        "tables": {"frames": start["tables"]["frames"], "labels": start["tables"]["labels"] + 1},
        "setting": 1}
    assert R.inputs_of(spark, parquet, ("frames",)) is None and R.settle(None, start) is None
