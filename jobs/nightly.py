"""The nightly job: extract frames from both input folders, import labels, featurize, train, score.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/nightly.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import JOBS, job_main

if __name__ == "__main__":
    job_main(JOBS["nightly"][0], __doc__)
