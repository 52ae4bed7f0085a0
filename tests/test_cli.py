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
