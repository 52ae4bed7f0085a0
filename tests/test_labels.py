"""Hand labels: both formats, every rejection, and resolution against real frames rows."""
import pandas as pd
import pytest

from vidspark.stages.labels import LabelsError, parse, resolve


def raw(text: str) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False).replace("", None)


def test_databricks_format():
    out = parse(raw("ImageName,label\nFight_Chaseframe0003.jpg,1\nWalk1frame0010.jpg,0\n"), "f")
    assert out[["image_name", "second", "label"]].values.tolist() == [
        ["Fight_Chaseframe0003.jpg", 3, 1], ["Walk1frame0010.jpg", 10, 0]]


def test_native_format_and_exact_duplicates():
    out = parse(raw("video,second,label\ncam1/a,3,1\ncam1/a,3,1\nb,0,0\n"), "f")
    assert out[["video", "second", "label"]].values.tolist() == [["cam1/a", 3, 1], ["b", 0, 0]]


@pytest.mark.parametrize("text, message", [
    ("name,label\nx,1\n", "needs the columns 'ImageName,label' or 'video,second,label'; found: name, label"),
    ("ImageName,label\nWalk1frame0001.jpg,2\n", "label must be 0 or 1; bad values: 2"),
    ("ImageName,label\nWalk1frame0001.jpg,yes\n", "label must be 0 or 1; bad values: yes"),
    ("ImageName,label\nWalk1frame0001.jpg,\n", "label must be 0 or 1; bad values: <empty>"),
    ("ImageName,label\nWalk1_0001.png,1\n", "ImageName must look like <video>frame<NNNN>.jpg; bad values: Walk1_0001.png"),
    ("ImageName,label\nWalk1frame0001.jpg,1\nWalk1frame0001.jpg,0\n", "conflicting labels (both 0 and 1) for: Walk1frame0001.jpg"),
    ("video,second,label\na,1.5,1\n", "second must be a non-negative integer; bad values: 1.5"),
    ("video,second,label\na,-1,1\n", "second must be a non-negative integer"),
    ("video,second,label\na,1,0\na,1,1\n", "conflicting labels (both 0 and 1) for: a/1"),
])
def test_bad_labels_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(LabelsError) as err:
        parse(raw(text), "labels.csv")
    assert message in str(err.value)
    assert str(err.value).startswith("labels.csv: ")


def test_resolve_against_frames_reports_unmatched(spark):
    frames = spark.createDataFrame(
        [("cam1/Walk1", 0, "Walk1frame0000.jpg"), ("cam1/Walk1", 1, "Walk1frame0001.jpg"),
         ("Fight", 0, "Fightframe0000.jpg")], "video string, second int, frame_name string")
    parsed = parse(raw("ImageName,label\nWalk1frame0000.jpg,0\nWalk1frame0001.jpg,1\n"
                       "Ghostframe0004.jpg,1\n"), "file:l.csv")
    labels, report = resolve(spark, parsed, frames)
    rows = sorted((r.video, r.second, r.label, r.source) for r in labels.collect())
    assert rows == [("Ghost", 4, 1, "file:l.csv"), ("cam1/Walk1", 0, 0, "file:l.csv"),
                    ("cam1/Walk1", 1, 1, "file:l.csv")]
    assert report == {"labels": 3, "matched": 2, "unmatched": 1, "unmatched_examples": ["Ghost@4s"]}


def test_ambiguous_frame_names_are_rejected(spark):
    frames = spark.createDataFrame(
        [("cam1/Walk1", 0, "Walk1frame0000.jpg"), ("cam2/Walk1", 0, "Walk1frame0000.jpg")],
        "video string, second int, frame_name string")
    parsed = parse(raw("ImageName,label\nWalk1frame0000.jpg,0\n"), "f")
    with pytest.raises(LabelsError, match="match several videos"):
        resolve(spark, parsed, frames)
