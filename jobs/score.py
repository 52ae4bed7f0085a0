"""Score the score videos' features with the registered `champion` model and write the predictions table.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/score.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import JOBS, job_main

if __name__ == "__main__":
    job_main(JOBS["score"][0], __doc__)
