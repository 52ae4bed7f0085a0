"""Bad configuration stops a job before any work, with one line that names the key or file."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def job(*args):
    return subprocess.run([sys.executable, "jobs/nightly.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--config", "conf/nope.yaml"], "config file not found: conf/nope.yaml"),
    (["--config", "conf/test.yaml", "--set", "train.maxiter=3"], "unknown configuration key 'train.maxiter'"),
    (["--config", "conf/test.yaml", "--set", "input.train_videos=/no/such/dir"],
     "input.train_videos: folder not found: /no/such/dir"),
    (["--config", "conf/test.yaml"], "input.train_videos and input.score_videos are both unset"),
    (["--config", "conf/test.yaml", "--set", "input.train_videos=.", "--set", "input.labels=/no/labels.csv"],
     "input.labels: file not found: /no/labels.csv"),
    (["--config", "conf/test.yaml", "--set", "input.train_videos=.", "--set", "input.labels={bad}"],
     "input.labels: {bad}: a labels file needs the columns"),
    (["--config", "conf/test.yaml", "--set", "input.train_videos=.", "--set", "storage.root=/proc/vidspark"],
     "storage.root: not writable: /proc/vidspark"),
])
def test_bad_configuration_exits_before_any_work(args, message, tmp_path):
    bad = tmp_path / "not-labels.csv"
    bad.write_text("frame;verdict\nWalk1frame0001.jpg;1\n")
    args = [a.format(bad=bad) for a in args]
    message = message.format(bad=bad)
    proc = job(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidspark: configuration error: {message}")


def run_job(script, *args):
    return subprocess.run([sys.executable, f"jobs/{script}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def one_line_failure(proc, prog="vidspark"):
    """The job failed with exactly one line on stderr past Spark's own start-up notices, and no
    traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.strip().splitlines() if line.startswith(f"{prog}: ")]
    assert len(ours) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ours[0]
    return ours[0]


def test_score_without_a_champion_says_to_train_first(tmp_path):
    proc = run_job("score.py", "--config", "conf/test.yaml", "--set", f"storage.root={tmp_path}")
    line = one_line_failure(proc)
    assert "has no version with the alias 'champion'" in line
    assert "run the train job first (vidspark train)" in line
    assert not (tmp_path / "tables").exists()      # it failed before Spark started


def test_featurize_on_an_empty_store_says_to_extract_first(tmp_path):
    from tests.conftest import WEIGHTS

    proc = run_job("featurize.py", "--config", "conf/test.yaml", "--set", f"storage.root={tmp_path}",
                   "--set", f"featurizer.weights={WEIGHTS}")
    line = one_line_failure(proc)
    assert line.startswith(f"vidspark: featurize: no frames stored under {tmp_path}")
    assert line.endswith("run the extract job first (vidspark extract)")


def test_missing_prerequisites_name_the_job_to_run(spark, tmp_path):
    """In process, on the tests' session: each job's first stage on an empty store."""
    from vidspark import pipeline, storage
    from vidspark.errors import PrerequisiteError
    from vidspark.stages import extract
    from tests.conftest import make_config

    (tmp_path / "train").mkdir()
    (tmp_path / "score").mkdir()
    config = make_config(tmp_path)
    storage.register_tables(spark, config)
    for first in ("featurize", "train"):
        with pytest.raises(PrerequisiteError, match=f"^{first}: no frames stored .* run the "
                                                    r"extract job first \(vidspark extract\)$"):
            pipeline.prerequisites(spark, config, first)
    with pytest.raises(PrerequisiteError, match=r"^score: no frames of score videos stored .* "
                                                r"input.score_videos and run the extract job"):
        pipeline.prerequisites(spark, config, "score")
    with pytest.raises(PrerequisiteError, match=r"^extract: no video files in input.train_videos "
                                                r"\(.*\) or input.score_videos \(.*\) and none "
                                                r"stored: copy videos"):
        extract.run(spark, config)


def test_the_vidspark_command_lists_its_commands_and_refuses_unknown_ones():
    import os

    tool = os.path.join(os.path.dirname(sys.executable), "vidspark")
    helped = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("nightly", "extract", "labels", "featurize", "train", "score", "report", "sql",
                    "sql-server", "review", "eval", "bench", "demo-data"):
        assert f"\n  {command} " in helped.stdout, command
        sub = subprocess.run([tool, command, "--help"], capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: vidspark {command} "), command
    unknown = subprocess.run([tool, "nope"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == ("vidspark: unknown command 'nope' (commands: nightly, "
                                      "extract, labels, featurize, train, score, report, sql, "
                                      "sql-server, review, eval, bench, demo-data)")


def test_spark_options_go_to_spark_wherever_they_are():
    from vidspark.cli import _spark_options

    assert _spark_options(["--master", "local[2]", "nightly", "--config", "c.yaml",
                           "--conf=spark.driver.memory=4g", "--set", "a=b"]) == (
        ["--master", "local[2]", "--conf", "spark.driver.memory=4g"],
        ["nightly", "--config", "c.yaml", "--set", "a=b"])
